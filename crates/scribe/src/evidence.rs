//! The evidence check, in code rather than in a prompt: every number, medication name, dose and
//! side a sentence states must occur in the turns or structured inputs it cites. A sentence that
//! fails keeps its flags; nothing is dropped or fixed silently.

use serde::{Deserialize, Serialize};

use crate::Lexicon;
use crate::language::{clean, tokens};

/// Why a sentence is flagged for the clinician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flag {
    pub kind: FlagKind,
    /// The token that has no support (empty for `no-evidence`).
    pub token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlagKind {
    /// The sentence cites nothing.
    NoEvidence,
    Number,
    Medication,
    Dose,
    Laterality,
}

/// The normalized tokens a fact check compares: spelled numbers as digits, contractions
/// expanded, `3/6` also as `3` and `6`.
fn normalized(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in clean(&tokens(text)) {
        let bare = t.trim_end_matches(['%', '+']).to_owned();
        if bare.contains('/') {
            out.extend(bare.split('/').filter(|p| !p.is_empty()).map(str::to_owned));
        }
        if bare.contains('.') && bare.chars().any(|c| c.is_ascii_digit()) {
            // "1.5" stays one number; "1.5." loses its full stop
            out.push(bare.trim_end_matches('.').to_owned());
        }
        if bare != t {
            out.push(bare.clone());
        }
        out.push(t);
    }
    out
}

/// The numbers a text states (spelled or in digits), normalized as the check compares them.
pub fn numbers(text: &str) -> Vec<String> {
    normalized(text).into_iter().filter(|t| is_number(t)).collect()
}

fn is_number(t: &str) -> bool {
    t.chars().any(|c| c.is_ascii_digit()) && t.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Checks one sentence against the text of its evidence.
pub fn check(sentence: &str, evidence: &[&str], lexicon: &Lexicon) -> Vec<Flag> {
    if evidence.is_empty() {
        return vec![Flag { kind: FlagKind::NoEvidence, token: String::new() }];
    }
    let said: std::collections::HashSet<String> = evidence.iter().flat_map(|e| normalized(e)).collect();
    let words = normalized(sentence);
    let mut flags = Vec::new();
    let mut flag = |kind, token: &str| {
        let f = Flag { kind, token: token.to_owned() };
        if !flags.contains(&f) {
            flags.push(f);
        }
    };
    for (i, w) in words.iter().enumerate() {
        if w.contains('/') {
            continue; // its parts are checked one by one
        }
        if is_number(w) && !said.contains(w) {
            let next = words.get(i + 1).map(String::as_str).unwrap_or("");
            let kind = if lexicon.dose_units.iter().any(|u| u == next) { FlagKind::Dose } else { FlagKind::Number };
            flag(kind, w);
        } else if lexicon.is_medication(w) && !said.contains(w) {
            flag(FlagKind::Medication, w);
        } else if lexicon.laterality.iter().any(|l| l == w) && !said.contains(w) {
            // "bilateral" is supported by "both", and the reverse.
            let both = ["bilateral", "bilaterally", "both"];
            if !(both.contains(&w.as_str()) && both.iter().any(|b| said.contains(*b))) {
                flag(FlagKind::Laterality, w);
            }
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexicon() -> Lexicon {
        Lexicon::builtin().unwrap()
    }

    #[test]
    fn supported_facts_pass_whatever_their_spelling() {
        let l = lexicon();
        let flags = check(
            "Increase lisinopril to 40 mg daily; a 3/6 murmur on the left.",
            &["i want to increase your lisinopril to forty milligrams", "a three out of six murmur on your left side"],
            &l,
        );
        assert!(flags.is_empty(), "{flags:?}");
    }

    #[test]
    fn each_kind_of_unsupported_fact_is_flagged() {
        let l = lexicon();
        let flags =
            check("Start metformin 500 mg for the right knee, 3 times.", &["start you on something for the knee"], &l);
        let kinds: Vec<FlagKind> = flags.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [FlagKind::Medication, FlagKind::Dose, FlagKind::Laterality, FlagKind::Number], "{flags:?}");
        assert_eq!(check("Anything.", &[], &l)[0].kind, FlagKind::NoEvidence);
    }
}
