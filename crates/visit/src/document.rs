//! Documents a visit produces besides the signed note: chat and video transcripts, attachments
//! (images, PDF) and the signed e-consent form. Each is checked before it is kept: a size limit,
//! the declared content type against the bytes themselves (magic numbers; text must be UTF-8),
//! and a SHA-256 digest that follows the document to the EHR and back.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telechart_fhir::parse_reference;

use crate::VisitError;

/// Largest document accepted, decoded (10 MiB).
pub const DOCUMENT_MAX_BYTES: usize = 10 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentKind {
    ChatTranscript,
    VideoTranscript,
    Attachment,
    ConsentForm,
    AfterVisitSummary,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::ChatTranscript => "chat-transcript",
            DocumentKind::VideoTranscript => "video-transcript",
            DocumentKind::Attachment => "attachment",
            DocumentKind::ConsentForm => "consent-form",
            DocumentKind::AfterVisitSummary => "after-visit-summary",
        }
    }

    /// The content types each kind may carry.
    fn accepted(self) -> &'static [&'static str] {
        match self {
            DocumentKind::ChatTranscript | DocumentKind::VideoTranscript => &["text/plain", "text/vtt"],
            DocumentKind::Attachment => &["application/pdf", "image/png", "image/jpeg"],
            DocumentKind::ConsentForm => &["application/pdf", "text/plain"],
            DocumentKind::AfterVisitSummary => &["text/plain", "text/html", "application/pdf"],
        }
    }
}

/// A document as the telehealth platform sends it: `text` for text, `data` (base64) for bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DocumentInput {
    pub kind: DocumentKind,
    pub title: String,
    pub content_type: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub data: Option<String>,
    /// `Practitioner/{id}`, `Patient/{id}` or `Device/{id}` that produced it, when known.
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// A document that passed every check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitDocument {
    /// Not `kind`: that names the artifact variant in the stored form.
    #[serde(rename = "documentKind")]
    pub kind: DocumentKind,
    pub title: String,
    pub content_type: String,
    /// The bytes, base64.
    pub data: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    /// Base64 SHA-1 of the bytes: what R4 defines `Attachment.hash` to be.
    pub sha1_base64: String,
    pub author: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The same content as plain text, for EHRs that take plain text only (an HTML after-visit
    /// summary keeps its words there instead of its markup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_text: Option<String>,
    /// BCP-47 language of the content, when known (`Attachment.language`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// What the bytes say they are, from their first bytes; text is whatever is valid UTF-8 without NUL.
fn sniff(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"%PDF-") {
        "application/pdf"
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0) {
        if bytes.starts_with(b"WEBVTT") || bytes.starts_with(b"\xEF\xBB\xBFWEBVTT") { "text/vtt" } else { "text/plain" }
    } else {
        "application/octet-stream"
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn validate_document(input: DocumentInput, now: DateTime<Utc>) -> Result<VisitDocument, VisitError> {
    if input.title.trim().is_empty() {
        return Err(VisitError::invalid("title", "must not be empty"));
    }
    let declared = input.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if !input.kind.accepted().contains(&declared.as_str()) {
        return Err(VisitError::invalid(
            "contentType",
            format!(
                "{declared:?} is not accepted for a {}; expected {}",
                input.kind.as_str(),
                input.kind.accepted().join(", ")
            ),
        ));
    }
    let bytes = match (input.text, input.data) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(data)) => {
            // Refuse before decoding what could only decode to too much.
            if data.len() > DOCUMENT_MAX_BYTES / 3 * 4 + 4 {
                return Err(VisitError::invalid("data", format!("is larger than {DOCUMENT_MAX_BYTES} bytes")));
            }
            STANDARD.decode(data.trim()).map_err(|e| VisitError::invalid("data", format!("is not base64: {e}")))?
        }
        (Some(_), Some(_)) => return Err(VisitError::invalid("data", "send text or data, not both")),
        (None, None) => return Err(VisitError::invalid("data", "text or data (base64) is required")),
    };
    if bytes.is_empty() {
        return Err(VisitError::invalid("data", "is empty"));
    }
    if bytes.len() > DOCUMENT_MAX_BYTES {
        return Err(VisitError::invalid("data", format!("is larger than {DOCUMENT_MAX_BYTES} bytes")));
    }
    let actual = sniff(&bytes);
    // A WebVTT file is also plain text; plain text declared as VTT is not.
    let matches = actual == declared
        || (declared == "text/plain" && actual == "text/vtt")
        || (declared == "text/html" && actual == "text/plain");
    if !matches {
        return Err(VisitError::invalid("contentType", format!("declared {declared:?} but the content is {actual}")));
    }
    if let Some(author) = &input.author
        && !matches!(parse_reference(author), Some(("Practitioner" | "Patient" | "Device" | "RelatedPerson", _)))
    {
        return Err(VisitError::invalid(
            "author",
            "must be a reference Practitioner/…, Patient/…, Device/… or RelatedPerson/…",
        ));
    }
    let created_at = input.created_at.unwrap_or(now);
    if created_at > now + chrono::Duration::minutes(5) {
        return Err(VisitError::invalid("createdAt", "is in the future"));
    }
    let sha256 = hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref());
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &bytes);
    Ok(VisitDocument {
        kind: input.kind,
        title: input.title.trim().to_owned(),
        content_type: declared,
        size: bytes.len() as u64,
        data: STANDARD.encode(&bytes),
        sha256,
        sha1_base64: STANDARD.encode(sha1.as_ref()),
        author: input.author,
        created_at,
        plain_text: None,
        language: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    fn input(kind: DocumentKind, content_type: &str, bytes: &[u8]) -> DocumentInput {
        DocumentInput {
            kind,
            title: "t".into(),
            content_type: content_type.into(),
            text: None,
            data: Some(STANDARD.encode(bytes)),
            author: None,
            created_at: None,
        }
    }

    #[test]
    fn the_bytes_must_be_what_the_content_type_says() {
        let pdf = b"%PDF-1.7\n...";
        let png = b"\x89PNG\r\n\x1a\n....";
        let ok = validate_document(input(DocumentKind::Attachment, "application/pdf", pdf), now()).unwrap();
        assert_eq!(ok.size, pdf.len() as u64);
        assert_eq!(ok.sha256.len(), 64);
        // "abc" → the standard test vector of SHA-256 and SHA-1.
        let abc = validate_document(input(DocumentKind::ChatTranscript, "text/plain", b"abc"), now()).unwrap();
        assert_eq!(abc.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(abc.sha1_base64, "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
        for (what, doc) in [
            ("png declared as pdf", input(DocumentKind::Attachment, "application/pdf", png)),
            ("exe declared as jpeg", input(DocumentKind::Attachment, "image/jpeg", b"MZ\x90\x00")),
            ("binary declared as text", input(DocumentKind::ChatTranscript, "text/plain", b"\xff\xfe\x00x")),
            ("html attachment", input(DocumentKind::Attachment, "text/html", b"<script>")),
        ] {
            assert_eq!(validate_document(doc, now()).unwrap_err().field(), Some("contentType"), "{what}");
        }
    }

    #[test]
    fn size_encoding_and_author_are_checked() {
        let big = vec![b'a'; DOCUMENT_MAX_BYTES + 1];
        let err = validate_document(input(DocumentKind::ChatTranscript, "text/plain", &big), now()).unwrap_err();
        assert_eq!(err.field(), Some("data"));
        let mut not_base64 = input(DocumentKind::Attachment, "application/pdf", b"%PDF-");
        not_base64.data = Some("%%%".into());
        assert_eq!(validate_document(not_base64, now()).unwrap_err().field(), Some("data"));
        let mut by_org = input(DocumentKind::ConsentForm, "application/pdf", b"%PDF-1.4");
        by_org.author = Some("Organization/1".into());
        assert_eq!(validate_document(by_org, now()).unwrap_err().field(), Some("author"));
        let mut vtt = input(DocumentKind::VideoTranscript, "text/vtt", b"WEBVTT\n\n00:00.000 --> 00:02.000\nHello");
        vtt.author = Some("Device/recorder".into());
        assert_eq!(validate_document(vtt, now()).unwrap().content_type, "text/vtt");
    }

    #[test]
    fn a_document_artifact_survives_its_stored_form() {
        let doc = validate_document(input(DocumentKind::ConsentForm, "application/pdf", b"%PDF-1.4 x"), now()).unwrap();
        let stored = serde_json::to_string(&crate::Artifact::Document(doc.clone())).unwrap();
        let back: crate::Artifact = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, crate::Artifact::Document(doc));
    }
}
