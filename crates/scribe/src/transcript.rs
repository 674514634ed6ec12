//! A visit's conversation as speaker turns, whatever form it came in: ACI-Bench `[doctor]` /
//! `[patient]` tags, WebVTT cues with `<v Speaker>` voice spans, or plain `Speaker: text` lines.
//! Every sentence of a draft points back at these turns by their index.

use serde::{Deserialize, Serialize};

use crate::ScribeError;

/// The largest transcript the drafter takes (a two-hour visit is about 150 KB of text).
pub const MAX_TRANSCRIPT_BYTES: usize = 4 * 1024 * 1024;

/// Who spoke a turn, as the drafter needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Clinician,
    Patient,
    /// A relative, interpreter or anyone else.
    Other,
}

/// One speaker turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Position in the transcript, from 0: what evidence links name.
    pub id: usize,
    pub role: Role,
    /// The label as written (`doctor`, `Dr. Smith`, `patient_guest`).
    pub speaker: String,
    pub text: String,
}

/// Parses a transcript's bytes. Errors name what is wrong: empty, too large, not UTF-8, or no
/// speaker labels at all (a drafter cannot tell the patient's words from the clinician's).
pub fn parse(bytes: &[u8]) -> Result<Vec<Turn>, ScribeError> {
    if bytes.len() > MAX_TRANSCRIPT_BYTES {
        return Err(ScribeError::Transcript(format!(
            "{} bytes; at most {MAX_TRANSCRIPT_BYTES} bytes are drafted",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ScribeError::Transcript(format!("not UTF-8 text (invalid byte at offset {})", e.valid_up_to())))?;
    let text = text.trim_start_matches('\u{feff}');
    if text.trim().is_empty() {
        return Err(ScribeError::Transcript("empty".into()));
    }
    let turns = if text.trim_start().starts_with("WEBVTT") {
        parse_webvtt(text)
    } else if text.lines().any(|l| bracket_tag(l).is_some()) {
        parse_labelled(text, bracket_tag)
    } else {
        parse_labelled(text, colon_label)
    };
    if turns.is_empty() {
        return Err(ScribeError::Transcript(
            "no speaker labels: expected [doctor] / [patient] tags, WebVTT <v Speaker> cues or `Speaker: text` lines"
                .into(),
        ));
    }
    if !turns.iter().any(|t| t.role == Role::Clinician) && !turns.iter().any(|t| t.role == Role::Patient) {
        return Err(ScribeError::Transcript(
            "no speaker is recognisable as the clinician or the patient (labels such as doctor, Dr., clinician, patient)"
                .into(),
        ));
    }
    Ok(turns)
}

/// `[doctor] text` → (`doctor`, `text`).
fn bracket_tag(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix('[')?;
    let end = rest.find(']')?;
    let label = &rest[..end];
    if label.is_empty() || label.len() > 40 || !label.chars().all(|c| c.is_alphanumeric() || "_- .".contains(c)) {
        return None;
    }
    Some((label, rest[end + 1..].trim()))
}

/// Turns from lines that open with a speaker label (found by `label`); a line without one
/// continues the turn before it.
fn parse_labelled(text: &str, label: fn(&str) -> Option<(&str, &str)>) -> Vec<Turn> {
    let mut turns: Vec<Turn> = Vec::new();
    for line in text.lines() {
        match label(line) {
            Some((speaker, said)) => push(&mut turns, speaker, said),
            None => append(&mut turns, line),
        }
    }
    turns
}

/// A chat export's time stamp before the speaker (`[10:02] `, `10:02:15 `, `[10:02 AM] `).
fn strip_timestamp(line: &str) -> &str {
    let line = line.trim_start();
    let is_time = |t: &str| {
        let t = t.trim().trim_end_matches("AM").trim_end_matches("PM").trim_end_matches("am").trim_end_matches("pm");
        let t = t.trim();
        t.contains(':') && !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '.')
    };
    if let Some(rest) = line.strip_prefix('[')
        && let Some(end) = rest.find(']')
        && is_time(&rest[..end])
    {
        return rest[end + 1..].trim_start();
    }
    match line.split_once(char::is_whitespace) {
        Some((first, rest)) if is_time(first) => rest.trim_start(),
        _ => line,
    }
}

/// `Dr. Smith: text` → (`Dr. Smith`, `text`): a short label of words before the first colon,
/// after any time stamp.
fn colon_label(line: &str) -> Option<(&str, &str)> {
    let (label, said) = strip_timestamp(line).split_once(':')?;
    let label = label.trim();
    let words = label.split_whitespace().count();
    if label.is_empty() || words > 4 || label.len() > 40 {
        return None;
    }
    if !label.chars().all(|c| c.is_alphabetic() || " .'-_".contains(c)) {
        return None;
    }
    Some((label, said.trim()))
}

/// WebVTT: cue text lines with `<v Speaker>` spans; timing lines, cue ids and notes skipped.
fn parse_webvtt(text: &str) -> Vec<Turn> {
    let mut turns: Vec<Turn> = Vec::new();
    let mut in_note = false;
    for line in text.lines().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            in_note = false;
            continue;
        }
        if in_note || line.starts_with("NOTE") || line.starts_with("STYLE") || line.starts_with("REGION") {
            in_note = true;
            continue;
        }
        if line.contains("-->") || line.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Some(rest) = line.strip_prefix("<v") {
            let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_alphanumeric()).trim_start();
            if let Some(end) = rest.find('>') {
                let label = rest[..end].trim();
                let said = strip_tags(&rest[end + 1..]);
                push(&mut turns, label, &said);
                continue;
            }
        }
        append(&mut turns, &strip_tags(line));
    }
    turns
}

/// Removes WebVTT markup (`</v>`, `<i>`, `<00:01.000>`).
fn strip_tags(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut depth = false;
    for c in line.chars() {
        match c {
            '<' => depth = true,
            '>' => depth = false,
            _ if !depth => out.push(c),
            _ => {}
        }
    }
    out.trim().to_owned()
}

fn push(turns: &mut Vec<Turn>, label: &str, said: &str) {
    let role = role_of(label);
    // One speaker's consecutive cues are one turn.
    if let Some(last) = turns.last_mut()
        && last.speaker == label
    {
        if !said.is_empty() {
            last.text.push(' ');
            last.text.push_str(said);
        }
        return;
    }
    turns.push(Turn { id: turns.len(), role, speaker: label.to_owned(), text: said.to_owned() });
}

fn append(turns: &mut [Turn], line: &str) {
    let line = line.trim();
    if let Some(last) = turns.last_mut()
        && !line.is_empty()
    {
        last.text.push(' ');
        last.text.push_str(line);
    }
}

/// What clinicians say and patients rarely do.
const CLINICIAN_SPEECH: [&str; 15] = [
    "physical exam",
    "assessment",
    "prescribe",
    "i reviewed",
    "on exam",
    "my plan",
    "your exam",
    "order",
    "impression",
    "your results",
    "i recommend",
    "diagnosis",
    "your symptoms",
    "i want you to",
    "follow up",
];

/// Transcripts sometimes carry the two labels the wrong way round (a recorder's speaker
/// assignment, a mislabelled export): when the "patient" plainly speaks as the clinician —
/// examining, assessing, prescribing — and the "clinician" does not, the roles are swapped.
/// Returns whether they were.
pub fn correct_swapped_roles(turns: &mut [Turn]) -> bool {
    let score = |role: Role| -> usize {
        turns
            .iter()
            .filter(|t| t.role == role)
            .map(|t| {
                let text = t.text.to_lowercase();
                CLINICIAN_SPEECH.iter().map(|c| text.matches(c).count()).sum::<usize>()
            })
            .sum()
    };
    let (as_patient, as_clinician) = (score(Role::Patient), score(Role::Clinician));
    if as_patient < 3 || as_patient <= 2 * as_clinician {
        return false;
    }
    for t in turns.iter_mut() {
        t.role = match t.role {
            Role::Clinician => Role::Patient,
            Role::Patient => Role::Clinician,
            Role::Other => Role::Other,
        };
    }
    true
}

/// The role a speaker label names.
pub fn role_of(label: &str) -> Role {
    let l = label.to_ascii_lowercase();
    let l = l.trim();
    const CLINICIAN: [&str; 10] =
        ["doctor", "dr", "dr.", "clinician", "physician", "provider", "np", "pa", "nurse", "md"];
    if CLINICIAN.iter().any(|c| l == *c || l.starts_with(&format!("{c} ")) || l.starts_with(&format!("{c}_")))
        || l.starts_with("dr.")
    {
        Role::Clinician
    } else if l == "patient" || l == "pt" || l.starts_with("patient ") || l == "client" {
        Role::Patient
    } else {
        Role::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aci_tags_become_turns_and_untagged_lines_continue_them() {
        let turns = parse(b"[doctor] hi , martha .\n[patient] hello .\nstill me\n[patient_guest] her son").unwrap();
        assert_eq!(turns.len(), 3);
        assert_eq!((turns[0].role, turns[1].role, turns[2].role), (Role::Clinician, Role::Patient, Role::Other));
        assert_eq!(turns[1].text, "hello . still me");
    }

    #[test]
    fn webvtt_voice_spans_are_speakers() {
        let vtt = "WEBVTT\n\nNOTE a comment\nstill the note\n\n1\n00:00:01.000 --> 00:00:03.000\n<v Dr. Lee>How are you?</v>\n\n00:00:03.000 --> 00:00:05.000\n<v Patient>My knee hurts.\n";
        let turns = parse(vtt.as_bytes()).unwrap();
        assert_eq!(turns.len(), 2, "{turns:?}");
        assert_eq!((turns[0].role, turns[0].text.as_str()), (Role::Clinician, "How are you?"));
        assert_eq!(turns[1].text, "My knee hurts.");
    }

    #[test]
    fn labels_the_wrong_way_round_are_swapped_back() {
        let mut turns = parse(
            b"[patient] on exam your lungs are clear. my assessment is asthma and i will prescribe an inhaler.\n\
              [doctor] okay thank you.\n[patient] i recommend we follow up in two weeks.\n",
        )
        .unwrap();
        assert!(correct_swapped_roles(&mut turns));
        assert_eq!(turns[0].role, Role::Clinician);
        assert_eq!(turns[1].role, Role::Patient);
        let mut right = parse(b"[doctor] on exam your lungs are clear.\n[patient] my doctor said so.\n").unwrap();
        assert!(!correct_swapped_roles(&mut right), "one cue is not enough to swap");
    }

    #[test]
    fn time_stamped_chat_lines_are_speakers() {
        let turns = parse(b"[10:02] Patient: Hi doctor, the cuff reading is on screen.\n10:03:20 Clinician: Thanks, I see it.\n[10:04 AM] Patient: Good.").unwrap();
        let said: Vec<(&str, Role, &str)> =
            turns.iter().map(|t| (t.speaker.as_str(), t.role, t.text.as_str())).collect();
        assert_eq!(
            said,
            [
                ("Patient", Role::Patient, "Hi doctor, the cuff reading is on screen."),
                ("Clinician", Role::Clinician, "Thanks, I see it."),
                ("Patient", Role::Patient, "Good."),
            ]
        );
    }

    #[test]
    fn colon_lines_are_speakers() {
        let turns = parse(b"Doctor: What brings you in?\nPatient: A cough: three days.\n").unwrap();
        assert_eq!(turns[1].text, "A cough: three days.");
    }

    #[test]
    fn bad_transcripts_say_what_is_wrong() {
        let err = |b: &[u8]| parse(b).unwrap_err().to_string();
        assert!(err(b"").contains("empty"));
        assert!(err(b"   \n").contains("empty"));
        assert!(err(b"just some words without anyone saying them").contains("no speaker labels"));
        assert!(err(b"[doctor] caf\xe9").contains("not UTF-8"));
        assert!(err(&vec![b'a'; MAX_TRANSCRIPT_BYTES + 1]).contains("at most"));
        assert!(err(b"Alice: hi\nBob: hello").contains("recognisable"));
    }
}
