//! Spoken words → clinical register, one token at a time: fillers and false starts out, spelled
//! numbers as digits, spoken units as their symbols, and first or second person turned into the
//! third person of a note. Nothing here adds a fact: every output token comes from an input token.

/// How the note refers to the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Female,
    Male,
    Unknown,
}

impl Sex {
    pub fn subject(self) -> &'static str {
        match self {
            Sex::Female => "she",
            Sex::Male => "he",
            Sex::Unknown => "the patient",
        }
    }
    pub fn object(self) -> &'static str {
        match self {
            Sex::Female => "her",
            Sex::Male => "him",
            Sex::Unknown => "the patient",
        }
    }
    pub fn possessive(self) -> &'static str {
        match self {
            Sex::Female => "her",
            Sex::Male => "his",
            Sex::Unknown => "their",
        }
    }
    pub fn reflexive(self) -> &'static str {
        match self {
            Sex::Female => "herself",
            Sex::Male => "himself",
            Sex::Unknown => "themselves",
        }
    }
}

/// Splits text into word and punctuation tokens, lower-cased, with contractions joined the way
/// ACI-Bench writes them apart (`do n't` → `don't`, `gon na` → `gonna`).
pub fn tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in text.split_whitespace() {
        let lower = raw.to_lowercase();
        let mut word = String::new();
        let chars: Vec<char> = lower.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            let inner =
                i > 0 && i + 1 < chars.len() && chars[i - 1].is_alphanumeric() && chars[i + 1].is_alphanumeric();
            let keep = c.is_alphanumeric()
                || c == '%'
                || c == '+'
                || (inner && matches!(c, '\'' | '-' | '/' | '.' | '’'))
                || (c == '\'' && i == 0 && chars.len() > 1);
            if keep {
                word.push(if c == '’' { '\'' } else { c });
            } else {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                if matches!(c, ',' | '.' | '?' | '!' | ';' | ':') {
                    out.push(c.to_string());
                }
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    join_split_contractions(out)
}

fn join_split_contractions(tokens: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    for t in tokens {
        if let Some(prev) = out.last_mut() {
            let joined = match (prev.as_str(), t.as_str()) {
                (_, "n't") => Some(format!("{prev}n't")),
                (_, "'s" | "'re" | "'ve" | "'ll" | "'d" | "'m") => Some(format!("{prev}{t}")),
                ("gon" | "wan" | "got", "na" | "ta") => Some(format!("{prev}{t}")),
                _ => None,
            };
            if let Some(j) = joined {
                *prev = j;
                continue;
            }
        }
        out.push(t);
    }
    out
}

/// Words a speaker starts a new thought with: where an unpunctuated transcript is cut.
const THOUGHT_OPENERS: [&str; 8] = ["okay", "ok", "so", "alright", "now", "well", "um", "but"];

/// Sentences of one turn, as token lists (split after `.`, `?`, `!`). A turn transcribed
/// without any punctuation is cut before the words that open a new thought.
pub fn sentences(tokens: &[String]) -> Vec<Vec<String>> {
    let unpunctuated = !tokens.iter().any(|t| matches!(t.as_str(), "." | "?" | "!" | ","));
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for t in tokens {
        let opens = THOUGHT_OPENERS.contains(&t.as_str()) && current.len() >= 14;
        // A long run is also cut where a clause joins.
        let joins = matches!(t.as_str(), "and" | "because" | "which" | "then") && current.len() >= 14;
        if unpunctuated && (opens || joins) {
            out.push(std::mem::take(&mut current));
        }
        current.push(t.clone());
        if matches!(t.as_str(), "." | "?" | "!") {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

const FILLERS: [&str; 14] =
    ["um", "uh", "uhm", "umm", "hmm", "mm", "mm-hmm", "uh-huh", "er", "ah", "oh", "huh", "kinda", "sorta"];

/// Spoken tokens without fillers, repeated words, false starts (`sh-`) and stock openers
/// (`so`, `okay`, `well`, `and`, `you know`).
pub fn clean(tokens: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let next = tokens.get(i + 1).map(String::as_str);
        if FILLERS.contains(&t) || (t.ends_with('-') && t.len() < 6) {
            i += 1;
            continue;
        }
        // Spoken acknowledgements mid-sentence; a note never writes them.
        if matches!(t, "yeah" | "yep" | "yup") {
            i += 1;
            continue;
        }
        if (t == "you" && next == Some("know")) || (t == "i" && next == Some("mean")) {
            i += 2;
            continue;
        }
        if t == "like" && matches!(next, Some(",")) {
            i += 2;
            continue;
        }
        if out.last().is_some_and(|p| p == t) && t != "." {
            i += 1;
            continue;
        }
        if t == "," && out.last().is_none_or(|p| p == ",") {
            i += 1;
            continue;
        }
        out.push(t.to_owned());
        i += 1;
    }
    // Openers that carry nothing.
    loop {
        let first = out.first().map(String::as_str);
        let second = out.get(1).map(String::as_str);
        let drop = match (first, second) {
            (Some("all"), Some("right")) => 2,
            (
                Some("so" | "okay" | "ok" | "well" | "and" | "yeah" | "alright" | "now" | "but" | "right" | "great"),
                _,
            ) => 1,
            (Some(","), _) => 1,
            _ => 0,
        };
        if drop == 0 || out.len() <= drop {
            break;
        }
        out.drain(..drop);
    }
    while out.len() > 1 && out.last().is_some_and(|t| t == ",") {
        out.pop();
    }
    spoken_forms(out)
}

/// `gonna` → `going to`, `don't` → `do not`; spelled numbers → digits; `milligrams` → `mg`;
/// `three out of six` → `3/6`; `one plus` → `1+`; `a hundred and twenty over eighty` → `120/80`.
fn spoken_forms(tokens: Vec<String>) -> Vec<String> {
    let mut expanded: Vec<String> = Vec::with_capacity(tokens.len() + 8);
    for t in tokens {
        let parts: &[&str] = match t.as_str() {
            "gonna" => &["going", "to"],
            "wanna" => &["want", "to"],
            "gotta" => &["have", "to"],
            "don't" => &["do", "not"],
            "doesn't" => &["does", "not"],
            "didn't" => &["did", "not"],
            "can't" => &["cannot"],
            "won't" => &["will", "not"],
            "isn't" => &["is", "not"],
            "aren't" => &["are", "not"],
            "wasn't" => &["was", "not"],
            "haven't" => &["have", "not"],
            "hasn't" => &["has", "not"],
            "couldn't" => &["could", "not"],
            "wouldn't" => &["would", "not"],
            "shouldn't" => &["should", "not"],
            "it's" => &["it", "is"],
            "that's" => &["that", "is"],
            "there's" => &["there", "is"],
            "let's" => &["we", "will"],
            "milligrams" | "milligram" => &["mg"],
            "micrograms" | "microgram" => &["mcg"],
            "milliliters" | "milliliter" => &["ml"],
            "kilograms" => &["kg"],
            "percent" => &["%"],
            _ => {
                expanded.push(t);
                continue;
            }
        };
        expanded.extend(parts.iter().map(|s| (*s).to_owned()));
    }
    numbers_as_digits(expanded)
}

fn unit_value(word: &str) -> Option<u64> {
    Some(match word {
        "zero" => 0,
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        _ => return None,
    })
}

fn tens_value(word: &str) -> Option<u64> {
    Some(match word {
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        _ => return None,
    })
}

/// The value of a spelled number starting at `i`, and how many tokens it spans.
pub fn spelled_number(tokens: &[String], i: usize) -> Option<(u64, usize)> {
    let word = |k: usize| tokens.get(k).map(String::as_str).unwrap_or("");
    let mut value: u64 = 0;
    let mut k = i;
    let mut any = false;
    // "a hundred", "one hundred and twenty"
    if word(k) == "a" && word(k + 1) == "hundred" {
        value = 100;
        k += 2;
        any = true;
        if word(k) == "and" && (tens_value(word(k + 1)).is_some() || unit_value(word(k + 1)).is_some()) {
            k += 1;
        }
    }
    if !any
        && let Some(u) = unit_value(word(k))
        && word(k + 1) == "hundred"
    {
        {
            value = u * 100;
            k += 2;
            any = true;
            if word(k) == "and" && (tens_value(word(k + 1)).is_some() || unit_value(word(k + 1)).is_some()) {
                k += 1;
            }
        }
    }
    if let Some(t) = tens_value(word(k)) {
        value += t;
        k += 1;
        any = true;
        let w = word(k);
        if let Some(u) = unit_value(w).filter(|u| (1..10).contains(u)) {
            value += u;
            k += 1;
        }
    } else if let Some(u) = unit_value(word(k)) {
        value += u;
        k += 1;
        any = true;
    }
    any.then_some((value, k - i))
}

/// Words after which a spelled "one" is a count, not a pronoun.
const COUNTED: [&str; 22] = [
    "mg", "mcg", "ml", "kg", "%", "plus", "out", "week", "weeks", "day", "days", "month", "months", "year", "years",
    "time", "times", "hour", "hours", "pound", "pounds", "tablet",
];

fn numbers_as_digits(tokens: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if let Some((value, span)) = spelled_number(&tokens, i) {
            let next = tokens.get(i + span).map(String::as_str).unwrap_or("");
            let lone_one = span == 1 && tokens[i] == "one";
            let lone_a = tokens[i] == "a" && span == 2;
            if !lone_one || COUNTED.contains(&next) || lone_a {
                out.push(value.to_string());
                i += span;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    // "3 out of 6" → "3/6", "120 over 80" → "120/80", "1 plus" → "1+"
    let mut joined: Vec<String> = Vec::with_capacity(out.len());
    let mut i = 0;
    let is_num = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    while i < out.len() {
        let at = |k: usize| out.get(k).map(String::as_str).unwrap_or("");
        if is_num(at(i)) && at(i + 1) == "out" && at(i + 2) == "of" && is_num(at(i + 3)) {
            joined.push(format!("{}/{}", at(i), at(i + 3)));
            i += 4;
        } else if is_num(at(i)) && at(i + 1) == "over" && is_num(at(i + 2)) {
            joined.push(format!("{}/{}", at(i), at(i + 2)));
            i += 3;
        } else if is_num(at(i)) && at(i + 1) == "plus" {
            joined.push(format!("{}+", at(i)));
            i += 2;
        } else if is_num(at(i)) && at(i + 1) == "%" {
            joined.push(format!("{}%", at(i)));
            i += 2;
        } else {
            joined.push(out[i].clone());
            i += 1;
        }
    }
    joined
}

/// Present-tense verbs the patient uses of themself that take an `s` in the third person.
fn third_person_verb(verb: &str) -> Option<String> {
    Some(match verb {
        "have" => "has".into(),
        "do" => "does".into(),
        "go" => "goes".into(),
        "am" => "is".into(),
        "try" => "tries".into(),
        "was" | "had" | "did" | "will" | "would" | "could" | "can" | "should" | "might" | "may" | "must" => {
            return None;
        }
        v if v.ends_with("ed") => return None,
        "feel" | "get" | "take" | "think" | "want" | "need" | "know" | "notice" | "use" | "work" | "live" | "drink"
        | "smoke" | "eat" | "sleep" | "walk" | "run" | "exercise" | "see" | "like" | "wake" | "hurt" | "say"
        | "remember" | "forget" | "check" | "play" | "wear" | "keep" | "drive" | "stay" | "cough" | "experience"
        | "believe" | "guess" | "hope" | "love" | "hate" | "spend" | "start" | "swim" | "bike" | "lift" | "ride"
        | "avoid" | "get up" | "understand" | "agree" | "deny" | "mean" | "usually" => format!("{verb}s"),
        _ => return None,
    })
}

/// The patient's own words in the third person: `i've been taking my lisinopril` → `she has
/// been taking her lisinopril`.
pub fn patient_to_third(tokens: &[String], sex: Sex) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tokens.len() + 4);
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let next = tokens.get(i + 1).map(String::as_str).unwrap_or("");
        match t {
            "i" | "i'm" | "i've" | "i'd" | "i'll" => {
                out.push(sex.subject().into());
                let verb = match t {
                    "i'm" => Some("is".to_owned()),
                    "i've" => Some("has".to_owned()),
                    "i'd" => Some("would".to_owned()),
                    "i'll" => Some("will".to_owned()),
                    _ => None,
                };
                if let Some(v) = verb {
                    out.push(v);
                } else if let Some(v) = third_person_verb(next) {
                    out.push(v);
                    i += 1;
                } else if next == "usually" || next == "also" || next == "just" || next == "really" || next == "still" {
                    // "i usually take" → "she usually takes"
                    let after = tokens.get(i + 2).map(String::as_str).unwrap_or("");
                    if let Some(v) = third_person_verb(after) {
                        out.push(next.into());
                        out.push(v);
                        i += 2;
                    }
                }
            }
            "my" => out.push(sex.possessive().into()),
            "me" => out.push(sex.object().into()),
            "mine" => out.push(if sex == Sex::Male { "his".into() } else { "hers".into() }),
            "myself" => out.push(sex.reflexive().into()),
            _ => out.push(t.into()),
        }
        i += 1;
    }
    out
}

/// The clinician's words about the patient in the third person: `your knee` → `her knee`,
/// `you have` → `she has`, `i'm going to` → `i am going to`.
pub fn clinician_to_third(tokens: &[String], sex: Sex) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tokens.len() + 4);
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let next = tokens.get(i + 1).map(String::as_str).unwrap_or("");
        let prev = out.last().map(String::as_str).unwrap_or("");
        match t {
            "you're" => out.extend([sex.subject().to_owned(), "is".into()]),
            "you've" => out.extend([sex.subject().to_owned(), "has".into()]),
            "you'll" => out.extend([sex.subject().to_owned(), "will".into()]),
            "you'd" => out.extend([sex.subject().to_owned(), "would".into()]),
            "i'm" => out.extend(["i".to_owned(), "am".into()]),
            "i've" => out.extend(["i".to_owned(), "have".into()]),
            "i'll" => out.extend(["i".to_owned(), "will".into()]),
            "i'd" => out.extend(["i".to_owned(), "would".into()]),
            "we're" => out.extend(["we".to_owned(), "are".into()]),
            "we'll" => out.extend(["we".to_owned(), "will".into()]),
            "your" => out.push(sex.possessive().into()),
            "yourself" => out.push(sex.reflexive().into()),
            "you" => {
                // Object after a verb or preposition; subject otherwise.
                let object = matches!(
                    prev,
                    "to" | "for"
                        | "with"
                        | "give"
                        | "start"
                        | "put"
                        | "see"
                        | "send"
                        | "get"
                        | "have"
                        | "want"
                        | "refer"
                        | "keep"
                        | "let"
                        | "bring"
                        | "ask"
                        | "tell"
                        | "help"
                        | "call"
                        | "check"
                        | "order"
                        | "schedule"
                        | "prescribe"
                        | "place"
                        | "continue"
                        | "recommend"
                        | "advise"
                        | "encourage"
                        | "like"
                        | "need"
                        | "on"
                        | "about"
                        | "at"
                        | "of"
                        | "from"
                        | "make"
                        | "take"
                        | "seen"
                        | "saw"
                        | "placed"
                        | "started"
                        | "told"
                        | "gave"
                        | "sent"
                        | "asked"
                        | "by"
                );
                if object {
                    out.push(sex.object().into());
                } else {
                    out.push(sex.subject().into());
                    if let Some(v) = match next {
                        "are" => Some("is"),
                        "have" => Some("has"),
                        "do" => Some("does"),
                        "were" => Some("was"),
                        _ => None,
                    } {
                        out.push(v.into());
                        i += 1;
                    } else if let Some(v) = third_person_verb(next).filter(|_| !matches!(next, "am")) {
                        out.push(v);
                        i += 1;
                    }
                }
            }
            _ => out.push(t.into()),
        }
        i += 1;
    }
    out
}

/// Tokens as a sentence: spaces between words, none before punctuation, a capital first letter,
/// a full stop at the end.
pub fn render(tokens: &[String]) -> String {
    let mut s = String::new();
    for t in tokens {
        let punct = matches!(t.as_str(), "," | "." | "?" | "!" | ";" | ":" | "%");
        if !s.is_empty() && !punct {
            s.push(' ');
        }
        if t == "i" {
            s.push('I');
        } else {
            s.push_str(t);
        }
    }
    let trimmed = s.trim_end_matches([',', ' ', ';', ':']).to_owned();
    let mut s = trimmed;
    if !s.ends_with(['.', '?', '!']) {
        s.push('.');
    }
    if s.ends_with('?') {
        s.pop();
        s.push('.');
    }
    capitalize(&s)
}

pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Vec<String> {
        tokens(s)
    }

    #[test]
    fn aci_contractions_are_joined_and_expanded() {
        assert_eq!(clean(&t("i do n't know")), ["i", "do", "not", "know"]);
        assert_eq!(clean(&t("i'm gon na check")), ["i'm", "going", "to", "check"]);
    }

    #[test]
    fn spelled_numbers_and_units_become_digits_and_symbols() {
        assert_eq!(render(&clean(&t("lisinopril forty milligrams a day"))), "Lisinopril 40 mg a day.");
        assert_eq!(render(&clean(&t("a three out of six murmur"))), "A 3/6 murmur.");
        assert_eq!(render(&clean(&t("one plus pitting edema"))), "1+ pitting edema.");
        assert_eq!(render(&clean(&t("a hundred and twenty over eighty"))), "120/80.");
        assert_eq!(render(&clean(&t("about forty five % ."))), "About 45%.");
        assert_eq!(render(&clean(&t("no one else at home"))), "No one else at home.");
    }

    #[test]
    fn fillers_and_openers_go() {
        assert_eq!(render(&clean(&t("okay , so , um , my knee , you know , hurts"))), "My knee, hurts.");
    }

    #[test]
    fn persons_turn_into_the_third() {
        let p = patient_to_third(&clean(&t("i've been taking my lisinopril and i feel fine")), Sex::Female);
        assert_eq!(render(&p), "She has been taking her lisinopril and she feels fine.");
        let c = clinician_to_third(&clean(&t("i want to start you on lasix because you have fluid")), Sex::Male);
        assert_eq!(render(&c), "I want to start him on lasix because he has fluid.");
    }
}
