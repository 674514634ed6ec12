//! The OpenAI-compatible engine, without the network: the chat-completions request that asks
//! for a JSON draft citing turn and input ids, and the reading of the answer into a [`Draft`]
//! that then goes through the same evidence check as the builtin engine's. The caller sends the
//! request (to a registered destination only) and hands the answer's bytes back.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Draft, Evidence, Lexicon, ScribeError, Section, Sentence, Template, VisitInput};

/// The largest answer read; a bigger one is refused, not truncated.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

const SYSTEM_PROMPT: &str = "You draft a clinician's visit note from a telehealth visit. \
Use only what the transcript turns and the structured inputs say; never add a fact, number, \
medication, dose or side they do not state. Answer with one JSON object and nothing else: \
{\"sections\": [{\"id\": SECTION_ID, \"sentences\": [{\"text\": SENTENCE, \"turns\": [TURN_IDS], \
\"inputs\": [INPUT_IDS]}]}]}. Use the section ids given, in their order; leave a section's \
sentences empty when the visit says nothing for it. Every sentence cites the turn ids and input \
ids it rests on. Write in the clinical register, third person.";

/// The chat-completions request body for `model`.
pub fn request(model: &str, input: &VisitInput, template: &Template) -> Value {
    let sections: Vec<Value> =
        template.sections.iter().map(|s| json!({"id": s.id, "title": s.title, "required": s.required})).collect();
    let turns: Vec<Value> =
        input.turns.iter().map(|t| json!({"id": t.id, "speaker": t.role, "text": t.text})).collect();
    let facts = input.patient.as_ref().map(crate::PatientFacts::as_input);
    let inputs: Vec<Value> =
        input.inputs.iter().chain(facts.iter()).map(|i| json!({"id": i.id, "kind": i.kind, "text": i.text})).collect();
    let visit = json!({"template": template.id, "sections": sections, "turns": turns, "inputs": inputs});
    json!({
        "model": model,
        "temperature": 0,
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": visit.to_string()},
        ],
    })
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct AnswerDraft {
    sections: Vec<AnswerSection>,
}

#[derive(Deserialize)]
struct AnswerSection {
    id: String,
    #[serde(default)]
    sentences: Vec<AnswerSentence>,
}

#[derive(Deserialize)]
struct AnswerSentence {
    text: String,
    #[serde(default)]
    turns: Vec<usize>,
    #[serde(default)]
    inputs: Vec<String>,
}

/// Reads a chat-completions answer into a draft named `engine`. A refusal, a cut-off answer,
/// content that is not the asked-for JSON or a section the template lacks is an error (nothing
/// is drafted). Citations of turns or inputs the visit does not have are dropped, so such a
/// sentence is flagged by the evidence check rather than trusted.
pub fn read_answer(
    engine: &str,
    answer: &[u8],
    input: &VisitInput,
    template: &Template,
    lexicon: &Lexicon,
) -> Result<Draft, ScribeError> {
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(ScribeError::Engine(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes")));
    }
    let completion: Completion = serde_json::from_slice(answer)
        .map_err(|e| ScribeError::Engine(format!("the answer is not a chat completion: {e}")))?;
    let choice =
        completion.choices.into_iter().next().ok_or_else(|| ScribeError::Engine("the answer has no choices".into()))?;
    if let Some(refusal) = choice.message.refusal.filter(|r| !r.trim().is_empty()) {
        return Err(ScribeError::Engine(format!("the model refused: {refusal}")));
    }
    match choice.finish_reason.as_deref() {
        Some("content_filter") => return Err(ScribeError::Engine("the model refused (content filter)".into())),
        Some("length") => return Err(ScribeError::Engine("the answer was cut off at the token limit".into())),
        _ => {}
    }
    let content = choice.message.content.ok_or_else(|| ScribeError::Engine("the answer has no content".into()))?;
    // Some servers wrap JSON in a Markdown fence even when asked not to.
    let body = content.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```");
    let parsed: AnswerDraft = serde_json::from_str(body.trim())
        .map_err(|e| ScribeError::Engine(format!("the draft in the answer is not the asked-for JSON: {e}")))?;
    let turns: HashSet<usize> = input.turns.iter().map(|t| t.id).collect();
    let mut ids: HashSet<&str> = input.inputs.iter().map(|i| i.id.as_str()).collect();
    if input.patient.is_some() {
        ids.insert(crate::PatientFacts::INPUT_ID);
    }
    let mut by_id: std::collections::HashMap<String, Vec<Sentence>> = std::collections::HashMap::new();
    for section in parsed.sections {
        if !template.sections.iter().any(|s| s.id == section.id) {
            return Err(ScribeError::Engine(format!(
                "the answer has section {:?}, not in template {}",
                section.id, template.id
            )));
        }
        let sentences = section
            .sentences
            .into_iter()
            .filter(|s| !s.text.trim().is_empty())
            .map(|s| Sentence {
                text: s.text.trim().to_owned(),
                evidence: s
                    .turns
                    .into_iter()
                    .filter(|t| turns.contains(t))
                    .map(|turn| Evidence::Turn { turn })
                    .chain(s.inputs.into_iter().filter(|i| ids.contains(i.as_str())).map(|id| Evidence::Input { id }))
                    .collect(),
                flags: Vec::new(),
            })
            .collect::<Vec<_>>();
        by_id.entry(section.id).or_default().extend(sentences);
    }
    let mut sections = Vec::with_capacity(template.sections.len());
    let mut missing = Vec::new();
    for spec in &template.sections {
        let sentences = by_id.remove(&spec.id).unwrap_or_default();
        if sentences.is_empty() {
            if spec.required {
                missing.push(spec.title.clone());
            } else {
                continue;
            }
        }
        sections.push(Section { id: spec.id.clone(), title: spec.title.clone(), sentences });
    }
    let mut draft = Draft { engine: engine.to_owned(), template: template.id.clone(), sections, missing };
    draft.check(input, lexicon);
    Ok(draft)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InputKind, StructuredInput, Templates, transcript};

    fn visit() -> VisitInput {
        let turns = transcript::parse(
            b"[doctor] how is the knee?\n[patient] my left knee hurts since last week, i take ibuprofen 400 mg.\n",
        )
        .unwrap();
        let inputs =
            vec![StructuredInput { id: "v1".into(), kind: InputKind::Vital, text: "Heart rate 72 /min".into() }];
        VisitInput { turns, inputs, patient: None }
    }

    fn answer(content: &str) -> Vec<u8> {
        json!({"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_request_names_every_section_turn_and_input() {
        let templates = Templates::builtin().unwrap();
        let request = request("m", &visit(), templates.get("general-follow-up").unwrap());
        let user: Value = serde_json::from_str(request["messages"][1]["content"].as_str().unwrap()).unwrap();
        assert_eq!(user["turns"].as_array().unwrap().len(), 2);
        assert_eq!(user["inputs"][0]["id"], "v1");
        assert_eq!(user["sections"][0]["id"], "cc");
        assert_eq!(request["model"], "m");
    }

    #[test]
    fn an_answer_is_checked_and_bad_citations_are_flagged() {
        let templates = Templates::builtin().unwrap();
        let template = templates.get("general-follow-up").unwrap();
        let lexicon = Lexicon::builtin().unwrap();
        let content = json!({"sections": [
            {"id": "cc", "sentences": [{"text": "Left knee pain.", "turns": [1]}]},
            {"id": "hpi", "sentences": [
                {"text": "She takes ibuprofen 400 mg.", "turns": [1]},
                {"text": "She takes ibuprofen 800 mg.", "turns": [1]},
                {"text": "Heart rate is 72.", "inputs": ["v1"]},
                {"text": "She was seen in 2019.", "turns": [99]}
            ]}
        ]})
        .to_string();
        let draft = read_answer("llm", &answer(&content), &visit(), template, &lexicon).unwrap();
        let flagged: Vec<&str> = draft.sentences().filter(|s| !s.flags.is_empty()).map(|s| s.text.as_str()).collect();
        assert_eq!(flagged, ["She takes ibuprofen 800 mg.", "She was seen in 2019."]);
        assert!(draft.sentences().nth(4).unwrap().evidence.is_empty(), "turn 99 does not exist");
    }

    #[test]
    fn refusals_cut_offs_and_malformed_answers_are_errors() {
        let templates = Templates::builtin().unwrap();
        let template = templates.get("general-follow-up").unwrap();
        let lexicon = Lexicon::builtin().unwrap();
        let refusal = json!({"choices": [{"message": {"content": null, "refusal": "I can't help with that."}}]});
        let cut = json!({"choices": [{"message": {"content": "{\"sections\": ["}, "finish_reason": "length"}]});
        for (bytes, expect) in [
            (refusal.to_string().into_bytes(), "refused"),
            (cut.to_string().into_bytes(), "cut off"),
            (answer("here is your note: ..."), "not the asked-for JSON"),
            (b"<html>".to_vec(), "not a chat completion"),
            (answer(r#"{"sections": [{"id": "made-up", "sentences": []}]}"#), "not in template"),
        ] {
            let e = read_answer("llm", &bytes, &visit(), template, &lexicon).unwrap_err().to_string();
            assert!(e.contains(expect), "{e}");
        }
    }
}
