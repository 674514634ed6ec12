//! Text to PDF, for EHRs that take documents as PDF only (a planned fallback): a title and the
//! text, wrapped and paginated, in Helvetica. Latin-1 letters (Spanish accents, ñ, ¿, ¡) print
//! through WinAnsiEncoding; characters outside it print as `?` — the PDF is a copy; the text
//! itself stays in Telechart. The document names its language (`/Lang`) and title (`/Info`).

const LINES_PER_PAGE: usize = 48;
const WRAP_AT: usize = 90;

fn escape(line: &str) -> String {
    line.chars()
        .map(|c| match c {
            '(' | ')' | '\\' => format!("\\{c}"),
            c if (' '..='~').contains(&c) => c.to_string(),
            // WinAnsiEncoding agrees with Latin-1 from U+00A0 on: written as an octal escape.
            c if ('\u{a0}'..='\u{ff}').contains(&c) => format!("\\{:03o}", u32::from(c)),
            _ => "?".to_owned(),
        })
        .collect()
}

fn wrap(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > WRAP_AT {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// A PDF of `title` and `text`, one page per 48 lines, with a correct cross-reference table.
pub fn text_pdf(title: &str, text: &str) -> Vec<u8> {
    text_pdf_in(title, text, "en")
}

/// As [`text_pdf`], in the language `lang` (BCP 47), which the catalog declares.
pub fn text_pdf_in(title: &str, text: &str, lang: &str) -> Vec<u8> {
    let mut lines = vec![title.to_owned(), String::new()];
    lines.extend(wrap(text));
    let pages: Vec<&[String]> = lines.chunks(LINES_PER_PAGE).collect();
    let page_count = pages.len().max(1);
    // Objects: 1 catalog, 2 pages, 3 font, then a page and its content stream per page.
    let kids: Vec<String> = (0..page_count).map(|p| format!("{} 0 R", 4 + 2 * p)).collect();
    let mut objects = vec![
        format!("<< /Type /Catalog /Pages 2 0 R /Lang ({}) >>", escape(lang)),
        format!("<< /Type /Pages /Kids [{}] /Count {page_count} >>", kids.join(" ")),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
    ];
    for (p, page) in pages.iter().enumerate() {
        let mut stream = String::from("BT /F1 11 Tf 14 TL 56 740 Td");
        for line in page.iter() {
            stream.push_str(&format!(" ({}) Tj T*", escape(line)));
        }
        stream.push_str(" ET");
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {} 0 R /Resources << /Font << /F1 3 0 R >> >> >>",
            5 + 2 * p
        ));
        objects.push(format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()));
    }
    // The document information dictionary, last: its number is the object count.
    objects.push(format!("<< /Title ({}) /Producer (Telechart) >>", escape(title)));
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info {} 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1,
            objects.len()
        )
        .as_bytes(),
    );
    pdf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_wrap_and_paginate_and_the_xref_points_at_each_object() {
        let text = "word ".repeat(2000);
        let pdf = text_pdf("Visit note (signed)", &text);
        let body = String::from_utf8_lossy(&pdf).into_owned();
        assert!(body.starts_with("%PDF-1.4") && body.trim_end().ends_with("%%EOF"));
        let pages = body.matches("/Type /Page ").count();
        assert!(pages > 1, "{pages} pages");
        assert!(body.contains("(Visit note \\(signed\\)) Tj"), "parentheses escaped");
        // Every xref offset lands on "N 0 obj".
        let xref_at: usize = body.rsplit("startxref\n").next().unwrap().lines().next().unwrap().parse().unwrap();
        let table = &body[xref_at..];
        for (n, line) in table.lines().skip(3).take_while(|l| l.ends_with(" n ")).enumerate() {
            let offset: usize = line[..10].parse().unwrap();
            assert!(body[offset..].starts_with(&format!("{} 0 obj", n + 1)), "object {}", n + 1);
        }
    }

    #[test]
    fn spanish_letters_print_through_win_ansi_and_the_language_is_declared() {
        let pdf = text_pdf_in("Resumen", "¿Tiene fiebre? Llame mañana.", "es");
        let body = String::from_utf8_lossy(&pdf).into_owned();
        assert!(body.contains("(\\277Tiene fiebre? Llame ma\\361ana.) Tj"), "{body}");
        assert!(body.contains("/Lang (es)") && body.contains("/Info 6 0 R") && body.contains("/Title (Resumen)"));
    }
}
