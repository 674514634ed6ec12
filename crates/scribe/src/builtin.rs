//! The builtin engine: deterministic, offline, rules and lexicons only. It reads the
//! conversation in the order a visit runs (history, examination, results, assessment and plan),
//! keeps what carries clinical content, turns it into the third person of a note, and files each
//! sentence under the template's section with the turns it came from. It writes no fact that is
//! not in a turn or a structured input; the phrasing around facts ("denies", "reports that",
//! the review-of-systems labels) is the register of the training notes.

use std::collections::BTreeMap;

use crate::language::{self, Sex, capitalize, clean, clinician_to_third, patient_to_third, render};
use crate::template::{SectionSource, Template};
use crate::{Draft, Evidence, InputKind, Lexicon, Role, ScribeError, Section, Sentence, VisitInput};

pub const ENGINE_NAME: &str = "telechart-builtin";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    History,
    Exam,
    Results,
    Plan,
}

/// One spoken sentence, cleaned, with where it came from.
#[derive(Debug, Clone)]
struct Utterance {
    turn: usize,
    role: Role,
    /// Cleaned tokens (fillers out, numbers as digits).
    words: Vec<String>,
    /// Lower-case text of `words`, for phrase matching.
    flat: String,
    /// The sentence as spoken (lower-case), before cleaning: for answers like "okay".
    said: String,
    phase: Phase,
    question: bool,
}

impl Utterance {
    fn has(&self, phrase: &str) -> bool {
        contains_phrase(&self.flat, phrase)
    }
    fn content_words(&self) -> usize {
        self.words.iter().filter(|w| w.chars().any(char::is_alphanumeric) && !STOP.contains(&w.as_str())).count()
    }
}

fn contains_phrase(flat: &str, phrase: &str) -> bool {
    let mut start = 0;
    while let Some(pos) = flat[start..].find(phrase) {
        let at = start + pos;
        let before = flat[..at].chars().next_back();
        let after = flat[at + phrase.len()..].chars().next();
        if before.is_none_or(|c| !c.is_alphanumeric()) && after.is_none_or(|c| !c.is_alphanumeric()) {
            return true;
        }
        start = at + phrase.len();
    }
    false
}

const STOP: [&str; 60] = [
    "the", "a", "an", "and", "or", "but", "i", "you", "he", "she", "it", "we", "they", "is", "are", "was", "were",
    "be", "been", "to", "of", "in", "on", "at", "for", "with", "that", "this", "so", "just", "like", "okay", "yes",
    "no", "yeah", "um", "uh", "do", "does", "did", "have", "has", "had", "my", "your", "me", "her", "his", "him",
    "not", "there", "what", "how", "any", "all", "right", "well", "know", "going", "get",
];

const NEGATIVE_ANSWERS: [&str; 9] =
    ["no", "nope", "not really", "nah", "no , nothing", "not that i", "none", "i have not", "i do not"];
const POSITIVE_ANSWERS: [&str; 9] =
    ["yes", "yeah", "yep", "i do", "i have", "sometimes", "a little", "mm-hmm", "correct"];

const EXAM_CUES: [&str; 10] = [
    "physical exam",
    "examination",
    "examine",
    "quick exam",
    "take a look",
    "listen to your heart",
    "listen to your lungs",
    "on exam",
    "your exam",
    "let me look",
];
/// Cues that open an exam beyond doubt.
const STRONG_EXAM_CUES: [&str; 5] =
    ["physical exam", "on your heart exam", "on exam", "on your exam", "physical examination"];
const RESULT_CUES: [&str; 16] = [
    "x-ray",
    "xray",
    "x-rays",
    "results",
    "lab work",
    "labs",
    "mri",
    "ct scan",
    "echocardiogram",
    "ekg",
    "a1c",
    "blood work",
    "ultrasound",
    "cat scan",
    "lipid panel",
    "urinalysis",
];
const PLAN_CUES: [&str; 13] = [
    "assessment",
    "my plan",
    "impression",
    "for your first problem",
    "my diagnosis",
    "what i would like to do",
    "what i want to do",
    "in terms of a plan",
    "treatment plan",
    "for your problem",
    "so for your",
    "i think you have",
    "i would like to start",
];
const RESULT_VERBS: [&str; 10] =
    ["show", "showed", "shows", "revealed", "reveals", "demonstrates", "came back", "was", "looks", "looked"];
const LATE_PLAN_CUES: [&str; 12] = [
    "what you have is",
    "next step",
    "diagnosis",
    "where i am at",
    "what we are going to do",
    "i recommend",
    "i would recommend",
    "my recommendation",
    "the plan",
    "i think you have",
    "i think this is",
    "i am going to prescribe",
];
/// What a plan statement says when no cue announced the plan.
const FALLBACK_PLAN_CUES: [&str; 14] = [
    "i would not",
    "i recommend",
    "i would like",
    "i want you to",
    "we will",
    "we are going to",
    "i am going to",
    "prescription",
    "continue",
    "follow up",
    "come back",
    "let us",
    "your dose",
    "i would argue",
];
/// Greetings and leave-takings: not part of a note.
const SMALL_TALK: [&str; 9] = [
    "how are you",
    "nice to meet you",
    "good to see you",
    "nice to see you",
    "how are you doing today",
    "take care",
    "have a good day",
    "have a great day",
    "see you later",
];
const REVIEW_CUES: [&str; 8] =
    ["look at", "go over", "review", "reviewed", "results of", "your results", "looking at", "went over"];
const EXAM_FINDINGS: [&str; 20] = [
    "appreciate",
    "normal",
    "clear",
    "tenderness",
    "tender",
    "swelling",
    "murmur",
    "no evidence",
    "bruising",
    "pain with",
    "range of motion",
    "strength",
    "sounds",
    "positive",
    "negative",
    "decreased",
    "intact",
    "redness",
    "edema",
    "looks",
];
const INSTRUCTION_CUES: [&str; 7] =
    ["follow up", "follow-up", "come back", "see you back", "call me", "call the office", "return"];
const SOCIAL_CUES: [&str; 13] = [
    "work",
    "job",
    "smoke",
    "smoking",
    "drink",
    "alcohol",
    "beer",
    "wine",
    "married",
    "live with",
    "kids",
    "exercise",
    "retired",
];

/// The builtin engine.
#[derive(Debug, Clone)]
pub struct Builtin {
    lexicon: Lexicon,
}

impl Builtin {
    pub fn new() -> Result<Builtin, ScribeError> {
        Ok(Builtin { lexicon: Lexicon::builtin()? })
    }

    pub fn lexicon(&self) -> &Lexicon {
        &self.lexicon
    }

    /// Drafts the visit's note in the template's sections.
    pub fn draft(&self, input: &VisitInput, template: &Template) -> Draft {
        <Self as crate::Engine>::draft(self, input, template)
    }
}

impl crate::Engine for Builtin {
    fn name(&self) -> &str {
        ENGINE_NAME
    }

    fn draft(&self, input: &VisitInput, template: &Template) -> Draft {
        let visit = Reading::new(input, &self.lexicon);
        let mut sections = Vec::with_capacity(template.sections.len());
        let mut missing = Vec::new();
        for spec in &template.sections {
            let candidates = match spec.source {
                SectionSource::ChiefComplaint => visit.chief_complaint(input),
                SectionSource::History => visit.history(),
                SectionSource::ReviewOfSystems => visit.review_of_systems(),
                SectionSource::Medications => visit.medications(),
                SectionSource::SocialHistory => visit.social_history(),
                SectionSource::Vitals => visit.vitals(input),
                SectionSource::Exam => visit.exam(),
                SectionSource::Results => visit.results(),
                SectionSource::AssessmentAndPlan => visit.assessment_and_plan(input),
                SectionSource::Instructions => visit.instructions(),
            };
            let sentences = within(candidates, spec.max_words.unwrap_or(usize::MAX));
            if sentences.is_empty() {
                if spec.required {
                    missing.push(spec.title.clone());
                } else {
                    continue;
                }
            }
            sections.push(Section { id: spec.id.clone(), title: spec.title.clone(), sentences });
        }
        let mut draft = Draft { engine: ENGINE_NAME.into(), template: template.id.clone(), sections, missing };
        draft.check(input, &self.lexicon);
        draft
    }
}

/// Keeps whole candidates, best first, until the cap; then puts them back in visit order.
fn within(candidates: Vec<Candidate>, cap: usize) -> Vec<Sentence> {
    let mut ranked: Vec<(usize, &Candidate)> = candidates.iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0)));
    let mut keep = vec![false; candidates.len()];
    let mut words = 0;
    for (i, c) in ranked {
        let n = c.sentence.text.split_whitespace().count();
        if words + n > cap && words > 0 {
            continue;
        }
        words += n;
        keep[i] = true;
    }
    candidates.into_iter().zip(keep).filter(|(_, k)| *k).map(|(c, _)| c.sentence).collect()
}

/// A sentence and how much it is worth keeping.
#[derive(Debug, Clone)]
struct Candidate {
    sentence: Sentence,
    score: f64,
}

fn candidate(text: String, turns: &[usize], score: f64) -> Candidate {
    let mut evidence: Vec<Evidence> = Vec::new();
    for t in turns {
        let e = Evidence::Turn { turn: *t };
        if !evidence.contains(&e) {
            evidence.push(e);
        }
    }
    Candidate { sentence: Sentence { text, evidence, flags: Vec::new() }, score }
}

/// What the engine has read of one visit.
struct Reading<'a> {
    lexicon: &'a Lexicon,
    utterances: Vec<Utterance>,
    sex: Sex,
    facts: crate::PatientFacts,
    /// (symptom, ROS system, positive?, turns)
    systems: Vec<(String, String, bool, Vec<usize>)>,
}

impl<'a> Reading<'a> {
    fn new(input: &VisitInput, lexicon: &'a Lexicon) -> Reading<'a> {
        let mut utterances = Vec::new();
        let mut phase = Phase::History;
        let mut examined = false;
        // Whether the plan began on a weak cue only, and the phase it interrupted.
        let (mut weak_plan, mut before_plan) = (false, Phase::History);
        let mut turns = input.turns.clone();
        crate::transcript::correct_swapped_roles(&mut turns);
        for turn in &turns {
            let raw = language::tokens(&turn.text);
            for sentence in language::sentences(&raw) {
                let question = sentence.last().is_some_and(|t| t == "?") || (!punctuated(&sentence) && asks(&sentence));
                let words = clean(&sentence);
                let flat = words.join(" ");
                // Commands to a dictation assistant are not part of the visit.
                if words.is_empty()
                    || contains_phrase(&flat, "dragon")
                    || SMALL_TALK.iter().any(|c| contains_phrase(&flat, c))
                {
                    continue;
                }
                let said = sentence.join(" ");
                let mut u = Utterance { turn: turn.id, role: turn.role, words, flat, said, phase, question };
                if u.role == Role::Clinician {
                    // Weaker cues count only in the second half of the visit.
                    let late = phase >= Phase::Exam || turn.id * 2 > input.turns.len();
                    let late_problem = late
                        && (u.flat.starts_with("for your")
                            || u.flat.starts_with("in terms of your")
                            || u.flat.starts_with("regarding your")
                            || LATE_PLAN_CUES.iter().any(|c| u.has(c)));
                    // A plan entered on a weak cue, or before any exam, was entered too early
                    // when an exam plainly follows: visits examine first and plan last.
                    let exam_after_early_plan =
                        phase == Phase::Plan && (!examined || weak_plan) && STRONG_EXAM_CUES.iter().any(|c| u.has(c));
                    if exam_after_early_plan {
                        for earlier in
                            utterances.iter_mut().rev().take_while(|e: &&mut Utterance| e.phase == Phase::Plan)
                        {
                            earlier.phase = before_plan;
                        }
                        phase = Phase::Exam;
                        weak_plan = false;
                    } else if PLAN_CUES.iter().any(|c| u.has(c)) {
                        if phase != Phase::Plan {
                            before_plan = phase;
                        }
                        phase = Phase::Plan;
                        weak_plan = false;
                    } else if late_problem && phase != Phase::Plan {
                        before_plan = phase;
                        phase = Phase::Plan;
                        weak_plan = true;
                    } else if phase != Phase::Plan && EXAM_CUES.iter().any(|c| u.has(c)) {
                        phase = Phase::Exam;
                    } else if phase != Phase::Plan
                        && RESULT_CUES.iter().any(|c| u.has(c))
                        && (phase == Phase::Exam || REVIEW_CUES.iter().any(|c| u.has(c)))
                    {
                        // Results read out after the exam, or announced as a review; a past
                        // result mentioned while taking the history stays history.
                        phase = Phase::Results;
                    }
                    u.phase = phase;
                    examined |= phase == Phase::Exam;
                }
                utterances.push(u);
            }
        }
        // No spoken plan cue at all (common when the plan is talked through, not announced):
        // the plan starts at the first clinician statement of the last third that proposes one.
        if !utterances.iter().any(|u| u.phase == Phase::Plan) {
            let from = input.turns.len() * 2 / 3;
            if let Some(start) = utterances.iter().position(|u| {
                u.role == Role::Clinician
                    && u.turn >= from
                    && !u.question
                    && FALLBACK_PLAN_CUES.iter().any(|c| u.has(c))
            }) {
                utterances[start..].iter_mut().for_each(|u| u.phase = Phase::Plan);
            }
        }
        let facts = input.patient.clone().unwrap_or_default();
        let sex = facts.sex.unwrap_or_else(|| sex_of(&utterances));
        let mut reading = Reading { lexicon, utterances, sex, facts, systems: Vec::new() };
        reading.systems = reading.pertinent_symptoms();
        reading
    }

    /// Pairs each clinician question naming symptoms with the patient's answer after it.
    fn pertinent_symptoms(&self) -> Vec<(String, String, bool, Vec<usize>)> {
        let mut out: Vec<(String, String, bool, Vec<usize>)> = Vec::new();
        for (i, q) in self.utterances.iter().enumerate() {
            if q.role != Role::Clinician || !q.question || q.phase == Phase::Plan {
                continue;
            }
            let Some(answer) = self.utterances[i + 1..].iter().take(3).find(|u| u.role == Role::Patient) else {
                continue;
            };
            let positive = if NEGATIVE_ANSWERS.iter().any(|n| answer.said.starts_with(n)) {
                false
            } else if POSITIVE_ANSWERS.iter().any(|p| answer.said.starts_with(p)) {
                true
            } else {
                continue;
            };
            for (system, symptoms) in &self.lexicon.ros {
                for symptom in symptoms {
                    // The longest phrase wins: "chest pain", not "pain".
                    let named = symptom.replace("your", self.sex.possessive());
                    if q.has(symptom) && !out.iter().any(|o| o.0.contains(named.as_str()) && o.3[0] == q.turn) {
                        out.retain(|o| !(named.contains(o.0.as_str()) && o.3[0] == q.turn));
                        out.push((named, system.clone(), positive, vec![q.turn, answer.turn]));
                    }
                }
            }
        }
        // What the patient volunteers (not negated) is endorsed.
        for u in self.utterances.iter().filter(|u| u.role == Role::Patient && u.phase == Phase::History) {
            if ["no", "not", "never", "nothing", "denies", "without"].iter().any(|n| u.words.iter().any(|w| w == n)) {
                continue;
            }
            for (system, symptoms) in &self.lexicon.ros {
                for symptom in symptoms {
                    if !symptom.contains("your")
                        && u.has(symptom)
                        && !out.iter().any(|o| o.0.contains(symptom.as_str()))
                    {
                        out.retain(|o| !symptom.contains(o.0.as_str()));
                        out.push((symptom.clone(), system.clone(), true, vec![u.turn]));
                    }
                }
            }
        }
        out
    }

    fn third(&self, u: &Utterance) -> Vec<String> {
        match u.role {
            Role::Patient => patient_to_third(&u.words, self.sex),
            _ => clinician_to_third(&u.words, self.sex),
        }
    }

    /// Score of a sentence for keeping: clinical content per word.
    fn worth(&self, u: &Utterance) -> f64 {
        let mut hits = 0.0;
        for w in &u.words {
            if self.lexicon.is_medication(w) {
                hits += 2.0;
            }
            if w.chars().any(|c| c.is_ascii_digit()) {
                hits += 1.0;
            }
        }
        for symptoms in self.lexicon.ros.values() {
            hits += symptoms.iter().filter(|s| u.has(s)).count() as f64 * 1.5;
        }
        hits + (u.content_words() as f64).min(12.0) / 4.0
    }

    /// The dictated one-line summary (`martha is a 50-year-old female with … who presents for …`).
    fn summary(&self) -> Option<&Utterance> {
        self.utterances.iter().find(|u| {
            u.role == Role::Clinician
                && !u.question
                && (u.flat.contains("year-old") || u.flat.contains("year old"))
                && u.content_words() >= 5
        })
    }

    fn chief_complaint(&self, input: &VisitInput) -> Vec<Candidate> {
        if let Some(reason) = &self.facts.visit_reason {
            return vec![from_facts(format!("{}.", capitalize(reason.trim().trim_end_matches('.'))), 1.0)];
        }
        for u in self.summary().into_iter().chain(self.utterances.iter().filter(|u| u.role == Role::Clinician).take(6))
        {
            for cue in [
                "presents today for",
                "presents today with",
                "presents for",
                "presents with",
                "presenting for",
                "presenting with",
                "here today for",
                "here for",
                "here with",
                "in today for",
                "in for",
                "referred for",
                "seeing me for",
                "to see me for",
                "following up on",
                "follow up on",
                "here to follow up on",
            ] {
                if let Some(pos) = u.flat.find(cue) {
                    let rest: Vec<&str> = u.flat[pos + cue.len()..]
                        .split_whitespace()
                        .take_while(|w| {
                            !matches!(*w, "." | "," | "?" | "and" | "who" | "today" | "that" | "which" | "so")
                        })
                        .filter(|w| !matches!(*w, "a" | "an" | "her" | "his" | "your" | "some" | "the"))
                        .take(8)
                        .collect();
                    if !rest.is_empty() {
                        let text = format!("{}.", capitalize(&rest.join(" ")));
                        return vec![candidate(text, &[u.turn], 1.0)];
                    }
                }
            }
        }
        if let Some(d) = input.inputs.iter().find(|i| i.kind == InputKind::Diagnosis) {
            let text = format!("{}.", d.text.trim_end_matches('.'));
            return vec![Candidate {
                sentence: Sentence { text, evidence: vec![Evidence::Input { id: d.id.clone() }], flags: Vec::new() },
                score: 1.0,
            }];
        }
        Vec::new()
    }

    /// `Martha Collins is a 50-year-old female with a past medical history significant for
    /// hypertension who presents for her annual exam.`, from the chart's facts.
    fn introduction(&self) -> Option<Candidate> {
        let f = &self.facts;
        let (Some(age), Some(sex)) = (f.age, f.sex) else { return None };
        let who = f.name.clone().unwrap_or_else(|| "The patient".into());
        let sex = if sex == Sex::Female { "female" } else { "male" };
        let mut text = format!("{who} is a {} {sex}", age.adjective());
        if !f.problems.is_empty() {
            let problems: Vec<&str> = f.problems.iter().map(String::as_str).collect();
            text.push_str(&format!(" with a past medical history significant for {}", and_list(&problems)));
        }
        if let Some(reason) = &f.visit_reason {
            text.push_str(&format!(" who presents for {}", reason.trim().trim_end_matches('.')));
        }
        text.push('.');
        Some(from_facts(text, 100.0))
    }

    fn history(&self) -> Vec<Candidate> {
        let mut out = Vec::new();
        let summary = self.summary();
        if let Some(s) = summary {
            out.push(candidate(render(&s.words), &[s.turn], 100.0));
        } else if let Some(intro) = self.introduction() {
            out.push(intro);
        }
        let verbs = ["reports that", "states that", "notes that"];
        let mut v = 0;
        let mut i = 0;
        while i < self.utterances.len() {
            let u = &self.utterances[i];
            i += 1;
            if u.phase != Phase::History || summary.is_some_and(|s| s.turn == u.turn && s.flat == u.flat) {
                continue;
            }
            match u.role {
                // A bare yes or no is read with its question (the review of systems).
                Role::Patient
                    if u.content_words() >= 3
                        && !u.question
                        && !(u.content_words() < 5
                            && ["no", "yes", "yeah", "nope", "not really"].iter().any(|a| u.said.starts_with(a))) =>
                {
                    let words = self.third(u);
                    let starts_with_subject = words.first().is_some_and(|w| w == self.sex.subject());
                    let text = if starts_with_subject && self.sex != Sex::Unknown {
                        let verb = verbs[v % verbs.len()];
                        v += 1;
                        format!("{} {verb} {}", capitalize(self.sex.subject()), render(&words))
                    } else {
                        render(&words)
                    };
                    let text = lowercase_after_that(text);
                    out.push(candidate(text, &[u.turn], self.worth(u)));
                }
                // The clinician's own summary of the history, where punctuation shows it is a
                // statement and not a question.
                Role::Clinician
                    if !u.question
                        && u.said.ends_with('.')
                        && u.content_words() >= 4
                        && u.has("you")
                        && self.worth(u) >= 3.0 =>
                {
                    out.push(candidate(render(&self.third(u)), &[u.turn], self.worth(u) * 0.8));
                }
                _ => {}
            }
        }
        // Pertinent negatives and positives asked about, one sentence each way.
        let denied: Vec<&(String, String, bool, Vec<usize>)> = self.systems.iter().filter(|s| !s.2).collect();
        if !denied.is_empty() {
            let mut names: Vec<&str> = Vec::new();
            for d in &denied {
                if !names.contains(&d.0.as_str()) {
                    names.push(&d.0);
                }
            }
            let turns: Vec<usize> = denied.iter().flat_map(|s| s.3.iter().copied()).collect();
            let text = format!("{} denies {}.", capitalize(self.sex.subject()), list(&names));
            out.push(candidate(text, &turns, 6.0));
        }
        out
    }

    fn review_of_systems(&self) -> Vec<Candidate> {
        // system → (endorsed, denied, turns)
        type Findings<'s> = (Vec<&'s str>, Vec<&'s str>, Vec<usize>);
        let mut by_system: BTreeMap<&str, Findings> = BTreeMap::new();
        for (symptom, system, positive, turns) in &self.systems {
            let entry = by_system.entry(system.as_str()).or_default();
            let side = if *positive { &mut entry.0 } else { &mut entry.1 };
            if !side.contains(&symptom.as_str()) {
                side.push(symptom);
            }
            entry.2.extend(turns);
        }
        by_system
            .into_iter()
            .map(|(system, (positive, negative, turns))| {
                let mut parts = Vec::new();
                if !positive.is_empty() {
                    parts.push(format!("Endorses {}.", and_list(&positive)));
                }
                if !negative.is_empty() {
                    parts.push(format!("Denies {}.", list(&negative)));
                }
                candidate(format!("• {system}: {}", parts.join(" ")), &turns, 2.0)
            })
            .collect()
    }

    fn mentions(&self, phase: Phase, wanted: impl Fn(&Utterance) -> bool) -> Vec<Candidate> {
        self.utterances
            .iter()
            .filter(|u| u.phase == phase && !u.question && u.content_words() >= 3 && wanted(u))
            .map(|u| candidate(render(&self.third(u)), &[u.turn], self.worth(u)))
            .collect()
    }

    fn medications(&self) -> Vec<Candidate> {
        self.mentions(Phase::History, |u| u.words.iter().any(|w| self.lexicon.is_medication(w)))
    }

    fn social_history(&self) -> Vec<Candidate> {
        self.mentions(Phase::History, |u| u.role == Role::Patient && SOCIAL_CUES.iter().any(|c| u.has(c)))
    }

    fn vitals(&self, input: &VisitInput) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = input
            .inputs
            .iter()
            .filter(|i| i.kind == InputKind::Vital)
            .map(|i| Candidate {
                sentence: Sentence {
                    text: format!("• {}.", i.text.trim_end_matches('.')),
                    evidence: vec![Evidence::Input { id: i.id.clone() }],
                    flags: Vec::new(),
                },
                score: 10.0,
            })
            .collect();
        let spoken = ["blood pressure", "heart rate", "pulse", "temperature", "oxygen", "respiratory rate", "weight"];
        for u in &self.utterances {
            if u.role == Role::Clinician
                && spoken.iter().any(|s| u.has(s))
                && u.words.iter().any(|w| w.chars().any(|c| c.is_ascii_digit()))
            {
                out.push(candidate(render(&self.third(u)), &[u.turn], 5.0));
            }
        }
        out
    }

    fn exam(&self) -> Vec<Candidate> {
        let mut out = Vec::new();
        for u in &self.utterances {
            if u.phase != Phase::Exam || u.role != Role::Clinician || u.question || u.content_words() < 3 {
                continue;
            }
            let instruction =
                ["going to", "let me", "can you", "squeeze", "deep breath", "push", "lie back", "follow my"]
                    .iter()
                    .any(|c| u.has(c));
            if instruction || !EXAM_FINDINGS.iter().any(|f| u.has(f)) {
                continue;
            }
            let system = self.lexicon.exam.iter().find(|(_, words)| words.iter().any(|w| u.has(w))).map(|(s, _)| s);
            let text = render(&finding(&self.third(u)));
            let text = match system {
                Some(s) => format!("• {s}: {text}"),
                None => text,
            };
            out.push(candidate(text, &[u.turn], self.worth(u) + 2.0));
        }
        out
    }

    fn results(&self) -> Vec<Candidate> {
        self.mentions(Phase::Results, |u| {
            u.role == Role::Clinician && (RESULT_CUES.iter().any(|c| u.has(c)) || RESULT_VERBS.iter().any(|c| u.has(c)))
        })
    }

    fn assessment_and_plan(&self, input: &VisitInput) -> Vec<Candidate> {
        let mut out = Vec::new();
        if let Some(s) = self.summary() {
            out.push(candidate(render(&s.words), &[s.turn], 50.0));
        } else if let Some(intro) = self.introduction() {
            out.push(Candidate { score: 50.0, ..intro });
        }
        for u in &self.utterances {
            if u.phase != Phase::Plan || u.role != Role::Clinician || u.question || u.content_words() < 3 {
                continue;
            }
            let text = render(&self.third(u));
            let text = match self.plan_label(u) {
                Some(label) => format!("• {label}: {text}"),
                None => text,
            };
            out.push(candidate(text, &[u.turn], self.worth(u) + 1.0));
        }
        for i in input.inputs.iter().filter(|i| matches!(i.kind, InputKind::Diagnosis | InputKind::Order)) {
            let label = if i.kind == InputKind::Diagnosis { "Diagnosis" } else { "Ordered" };
            out.push(Candidate {
                sentence: Sentence {
                    text: format!("• {label}: {}.", i.text.trim_end_matches('.')),
                    evidence: vec![Evidence::Input { id: i.id.clone() }],
                    flags: Vec::new(),
                },
                score: 20.0,
            });
        }
        // The patient's agreement, when the plan was put to them and they assented.
        let assent = self.utterances.iter().rev().find(|u| {
            u.role == Role::Patient
                && u.phase == Phase::Plan
                && ["okay", "sounds good", "yes", "all right", "that sounds", "got it", "thank you"]
                    .iter()
                    .any(|a| u.said.starts_with(a))
        });
        if let Some(a) = assent {
            out.push(candidate(
                "Patient Agreements: The patient understands and agrees with the recommended medical treatment plan."
                    .into(),
                &[a.turn],
                30.0,
            ));
        }
        out
    }

    /// The kind of plan statement, as notes label them.
    fn plan_label(&self, u: &Utterance) -> Option<&'static str> {
        const TESTING: [&str; 14] = [
            "order",
            "labs",
            "lab work",
            "blood work",
            "x-ray",
            "mri",
            "ct",
            "ultrasound",
            "echocardiogram",
            "ekg",
            "a1c",
            "test",
            "biopsy",
            "scan",
        ];
        const TREATMENT: [&str; 9] =
            ["prescribe", "prescription", "start", "increase", "decrease", "continue", "refill", "dose", "injection"];
        const REASONING: [&str; 8] =
            ["i think", "because", "likely", "probably", "due to", "consistent with", "sounds like", "looks like"];
        const REFERRAL: [&str; 3] = ["refer", "referral", "specialist"];
        const COUNSELING: [&str; 7] =
            ["recommend", "encourage", "advise", "explained", "important", "diet", "exercise"];
        if u.words.iter().any(|w| self.lexicon.is_medication(w)) || TREATMENT.iter().any(|c| u.has(c)) {
            Some("Medical Treatment")
        } else if TESTING.iter().any(|c| u.has(c)) {
            Some("Additional Testing")
        } else if REFERRAL.iter().any(|c| u.has(c)) {
            Some("Specialist Referrals")
        } else if COUNSELING.iter().any(|c| u.has(c)) {
            Some("Patient Education and Counseling")
        } else if REASONING.iter().any(|c| u.has(c)) {
            Some("Medical Reasoning")
        } else {
            None
        }
    }

    fn instructions(&self) -> Vec<Candidate> {
        self.mentions(Phase::Plan, |u| u.role == Role::Clinician && INSTRUCTION_CUES.iter().any(|c| u.has(c)))
    }
}

/// An exam finding without the clinician's narration: `on her heart exam , i do appreciate a
/// 3/6 murmur` → `a 3/6 murmur`.
fn finding(words: &[String]) -> Vec<String> {
    let mut start = 0;
    let at = |k: usize| words.get(k).map(String::as_str).unwrap_or("");
    // "on her heart exam ," / "on examination of her knee ,"
    if at(0) == "on"
        && let Some(comma) = words.iter().take(8).position(|w| w == ",")
        && words[..comma].iter().any(|w| w.starts_with("exam"))
    {
        start = comma + 1;
    }
    // "i do appreciate" / "i hear" / "i do notice" / "i can see"
    let mut k = start;
    if at(k) == "i" {
        k += 1;
        if matches!(at(k), "do" | "can" | "did") {
            k += 1;
        }
        if matches!(at(k), "appreciate" | "hear" | "notice" | "see" | "feel" | "note" | "noticed" | "heard" | "felt") {
            start = k + 1;
        }
    }
    if start >= words.len() {
        return words.to_vec();
    }
    words[start..].to_vec()
}

/// Whether a sentence came with its own punctuation (some transcripts have none at all).
fn punctuated(sentence: &[String]) -> bool {
    sentence.iter().any(|t| matches!(t.as_str(), "." | "?" | "!" | ","))
}

/// An unpunctuated sentence that opens like a question.
fn asks(sentence: &[String]) -> bool {
    let first: Vec<&str> = sentence.iter().take(2).map(String::as_str).collect();
    let opener = [
        "how's", "what's", "tell", "do", "does", "did", "have", "has", "are", "is", "was", "were", "any", "how",
        "what", "when", "where", "which", "who", "why", "can", "could", "would", "will",
    ];
    first.first().is_some_and(|f| opener.contains(f))
        || (first.first().is_some_and(|f| ["and", "so", "okay", "now"].contains(f))
            && first.get(1).is_some_and(|f| opener.contains(f)))
}

/// After "She reports that", the next word is not a sentence start.
fn lowercase_after_that(text: String) -> String {
    for verb in ["reports that ", "states that ", "notes that "] {
        if let Some(pos) = text.find(verb) {
            let at = pos + verb.len();
            let rest = &text[at..];
            if rest.starts_with("I ") {
                return text;
            }
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                return format!("{}{}{}", &text[..at], c.to_lowercase(), chars.as_str());
            }
        }
    }
    text
}

/// A sentence resting on the chart's facts about the patient.
fn from_facts(text: String, score: f64) -> Candidate {
    Candidate {
        sentence: Sentence {
            text,
            evidence: vec![Evidence::Input { id: crate::PatientFacts::INPUT_ID.into() }],
            flags: Vec::new(),
        },
        score,
    }
}

/// `a, b, and c` (or `or`).
fn joined(items: &[&str], conjunction: &str) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [a, b] => format!("{a} {conjunction} {b}"),
        [rest @ .., last] => format!("{}, {conjunction} {last}", rest.join(", ")),
    }
}

fn and_list(items: &[&str]) -> String {
    joined(items, "and")
}

fn list(items: &[&str]) -> String {
    joined(items, "or")
}

fn sex_of(utterances: &[Utterance]) -> Sex {
    let (mut female, mut male) = (0, 0);
    for u in utterances.iter().filter(|u| u.role == Role::Clinician) {
        for w in &u.words {
            match w.as_str() {
                "female" | "woman" | "lady" | "girl" | "mrs." | "ms." | "mrs" | "ms" | "she" | "her" => female += 1,
                "male" | "man" | "gentleman" | "boy" | "mr." | "mr" | "he" | "his" | "him" => male += 1,
                _ => {}
            }
        }
    }
    match female.cmp(&male) {
        std::cmp::Ordering::Greater => Sex::Female,
        std::cmp::Ordering::Less => Sex::Male,
        std::cmp::Ordering::Equal => Sex::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Templates, transcript};

    const VISIT: &str = "[doctor] hi , martha . how are you ?\n\
        [patient] i'm doing okay .\n\
        [doctor] martha is a 50-year-old female with hypertension who presents for her annual exam .\n\
        [doctor] any chest pain or shortness of breath ?\n\
        [patient] no , not that i've noticed .\n\
        [patient] i'm still forgetting to take my blood pressure medication when work gets stressful .\n\
        [doctor] okay , let me do a quick physical exam .\n\
        [doctor] on your heart exam , i do appreciate a three out of six systolic ejection murmur .\n\
        [doctor] so for your hypertension , i want to increase your lisinopril to forty milligrams a day .\n\
        [patient] okay .\n";

    fn draft() -> Draft {
        let turns = transcript::parse(VISIT.as_bytes()).unwrap();
        let templates = Templates::builtin().unwrap();
        Builtin::new().unwrap().draft(
            &VisitInput { turns, inputs: Vec::new(), patient: None },
            templates.get("general-follow-up").unwrap(),
        )
    }

    #[test]
    fn a_visit_becomes_sections_with_evidence() {
        let d = draft();
        let text = d.to_text();
        assert!(text.contains("CHIEF COMPLAINT\n\nAnnual exam."), "{text}");
        assert!(text.contains("She denies chest pain or shortness of breath."), "{text}");
        assert!(text.contains("• Cardiovascular: Denies chest pain.\n"), "{text}");
        assert!(text.contains("Patient Agreements:"), "{text}");
        assert!(text.contains("3/6 systolic ejection murmur"), "{text}");
        assert!(text.contains("increase her lisinopril to 40 mg a day"), "{text}");
        assert!(d.sentences().all(|s| !s.evidence.is_empty()), "every sentence cites its turns");
        assert_eq!(d.flagged(), 0, "{:?}", d.sentences().filter(|s| !s.flags.is_empty()).collect::<Vec<_>>());
    }

    #[test]
    fn the_same_visit_drafts_the_same_note() {
        assert_eq!(draft(), draft());
    }

    #[test]
    fn what_the_visit_did_not_cover_is_named_not_invented() {
        let turns = transcript::parse(b"[doctor] hello .\n[patient] hi .").unwrap();
        let templates = Templates::builtin().unwrap();
        let d = Builtin::new().unwrap().draft(
            &VisitInput { turns, inputs: Vec::new(), patient: None },
            templates.get("general-follow-up").unwrap(),
        );
        assert_eq!(d.missing, ["CHIEF COMPLAINT", "HISTORY OF PRESENT ILLNESS", "ASSESSMENT AND PLAN"]);
        assert!(d.sentences().next().is_none());
    }
}
