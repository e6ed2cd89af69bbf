//! The family's report as a PDF (A4), made with `krilla` in the console itself: the
//! same words as the page, each line of the report a block (date and organisation,
//! then what happened, which information and why), wrapped to the page and numbered.
//! The font is DejaVu Sans, built in (its licence is in `assets/README.md`), because a
//! PDF's standard fonts cannot write Welsh (ŵ, ŷ) or Polish (ą, ł, ż) letters; only the
//! glyphs used are embedded.

use krilla::Document;
use krilla::geom::Point;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::text::{Font, TextDirection};
use skrifa::MetadataProvider;
use skrifa::instance::{LocationRef, Size};

use crate::family::{Catalogues, FamilyReport};

/// DejaVu Sans 2.37.
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// A4 in points, and the margins.
const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const BODY: f32 = 10.0;
const TITLE: f32 = 17.0;
/// The space a line takes, as a multiple of its size.
const LEADING: f32 = 1.4;

/// Lays words out on pages: it knows how wide the font writes, where the next line
/// goes, and starts a new page when one is full.
struct Writer<'a> {
    font: Font,
    measure: skrifa::FontRef<'a>,
    /// Pages, each its lines: (x, baseline y, size, text).
    pages: Vec<Vec<(f32, f32, f32, String)>>,
    y: f32,
}

impl<'a> Writer<'a> {
    fn width(&self, text: &str, size: f32) -> f32 {
        let charmap = self.measure.charmap();
        let metrics = self.measure.glyph_metrics(Size::new(size), LocationRef::default());
        text.chars().map(|c| charmap.map(c).and_then(|glyph| metrics.advance_width(glyph)).unwrap_or(size * 0.6)).sum()
    }

    /// `text` broken into lines no wider than `width` (at spaces; a word longer than a
    /// line is broken where it must be).
    fn wrap(&self, text: &str, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split_whitespace() {
            let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
            if self.width(&candidate, size) <= width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let mut rest = word.to_owned();
            while self.width(&rest, size) > width {
                let fits = (1..=rest.chars().count())
                    .take_while(|n| self.width(&rest.chars().take(*n).collect::<String>(), size) <= width)
                    .last()
                    .unwrap_or(1);
                lines.push(rest.chars().take(fits).collect());
                rest = rest.chars().skip(fits).collect();
            }
            line = rest;
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines
    }

    /// Writes `text` at `size`, indented by `indent`, wrapped; keeps `keep` more lines'
    /// room on the page (so a heading is not left alone at its foot).
    fn paragraph(&mut self, text: &str, size: f32, indent: f32, keep: usize) {
        let lines = self.wrap(text, size, WIDTH - 2.0 * MARGIN - indent);
        for (n, line) in lines.iter().enumerate() {
            let room = if n == 0 { keep as f32 * BODY * LEADING } else { 0.0 };
            if self.y + size * LEADING + room > HEIGHT - MARGIN {
                self.pages.push(Vec::new());
                self.y = MARGIN;
            }
            self.y += size * LEADING;
            let x = MARGIN + indent;
            if let Some(page) = self.pages.last_mut() {
                page.push((x, self.y, size, line.clone()));
            }
        }
    }

    fn gap(&mut self, points: f32) {
        self.y += points;
    }
}

/// The report as PDF bytes.
pub(crate) fn render(report: &FamilyReport, catalogues: &Catalogues) -> Result<Vec<u8>, String> {
    let font = Font::new(FONT.into(), 0).ok_or("the built-in font does not load")?;
    let measure = skrifa::FontRef::new(FONT).map_err(|err| format!("the built-in font does not read: {err}"))?;
    let mut writer = Writer { font, measure, pages: vec![Vec::new()], y: MARGIN };

    writer.paragraph(&report.title, TITLE, 0.0, 0);
    writer.gap(6.0);
    for text in [&report.intro, &report.child, &format!("{} {}", report.made, report.count)] {
        writer.paragraph(text, BODY, 0.0, 0);
        writer.gap(4.0);
    }
    let [_, _, what, information, why] = &report.columns;
    for row in &report.rows {
        writer.gap(8.0);
        let [date, who, happened, which, because] = row;
        // The block's heading keeps three lines of it with it.
        writer.paragraph(&format!("{date} · {who}"), BODY + 1.0, 0.0, 3);
        writer.paragraph(&format!("{what}: {happened}"), BODY, 12.0, 0);
        if !which.is_empty() {
            writer.paragraph(&format!("{information}: {which}"), BODY, 12.0, 0);
        }
        writer.paragraph(&format!("{why}: {because}"), BODY, 12.0, 0);
    }
    writer.gap(12.0);
    writer.paragraph(&report.questions, BODY, 0.0, 0);

    let mut document = Document::new();
    let metadata = Metadata::new()
        .title(report.title.clone())
        .language(report.tag.clone())
        .creator(format!("Tell It Once {}", env!("CARGO_PKG_VERSION")));
    document.set_metadata(metadata);
    let settings = PageSettings::from_wh(WIDTH, HEIGHT).ok_or("A4 is not a page size")?;
    let pages = std::mem::take(&mut writer.pages);
    for (number, lines) in pages.into_iter().enumerate() {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        for (x, y, size, text) in lines {
            surface.draw_text(Point::from_xy(x, y), writer.font.clone(), size, &text, false, TextDirection::Auto);
        }
        let mut args = fluent_bundle::FluentArgs::new();
        args.set("page", number + 1);
        let footer = catalogues.say(&report.tag, "page-number", Some(&args));
        let footer_x = WIDTH - MARGIN - writer.width(&footer, 8.0);
        surface.draw_text(
            Point::from_xy(footer_x, HEIGHT - MARGIN / 2.0),
            writer.font.clone(),
            8.0,
            &footer,
            false,
            TextDirection::Auto,
        );
        surface.finish();
        page.finish();
    }
    document.finish().map_err(|err| format!("{err:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rows: usize) -> FamilyReport {
        FamilyReport {
            tag: "pl".into(),
            title: "Kto widział informacje o Twoim dziecku".into(),
            intro: "Ten raport wymienia każdy przypadek ".repeat(8),
            child: "Numer NHS dziecka: *** *** 9196".into(),
            made: "Sporządzono 2026-12-01.".into(),
            count: format!("Zapisano {rows} zdarzeń."),
            questions: "Jeśli coś tutaj wydaje się błędne, zapytaj.".into(),
            columns: ["Data", "Organizacja", "Co się stało", "Jakie informacje", "Dlaczego"].map(String::from),
            rows: (0..rows)
                .map(|n| {
                    [
                        "2026-11-30".into(),
                        format!("Ysgol Gymraeg Aberystwyth {n}"),
                        "przeglądała kartę Twojego dziecka".into(),
                        "co warto wiedzieć o Twoim dziecku".into(),
                        "odmowa: nie obejmuje tego żadna zgoda".into(),
                    ]
                })
                .collect(),
        }
    }

    #[test]
    fn a_report_becomes_a_pdf_of_as_many_pages_as_it_needs() {
        let catalogues = Catalogues::load().unwrap();
        let short = render(&report(2), &catalogues).unwrap();
        assert!(short.starts_with(b"%PDF-"), "a PDF");
        let long = render(&report(200), &catalogues).unwrap();
        let pages = |pdf: &[u8]| -> usize {
            let text = String::from_utf8_lossy(pdf);
            let count = text.split_once("/Type/Pages/Count ").expect("a page tree").1;
            count.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
        };
        assert_eq!(pages(&short), 1);
        assert!(pages(&long) > 10, "{} pages", pages(&long));
        // Its language and title are declared, for screen readers and search.
        let text = String::from_utf8_lossy(&short);
        assert!(text.contains("/Lang(pl)"), "the language");
        assert!(text.contains("Kto widział informacje o Twoim dziecku"), "the title, in the metadata");
        // The font is embedded as a subset of the glyphs used, not whole.
        assert!(short.len() < 100_000, "{} bytes", short.len());
    }

    #[test]
    fn lines_wrap_within_the_page_and_long_words_break() {
        let font = Font::new(FONT.into(), 0).unwrap();
        let writer = Writer { font, measure: skrifa::FontRef::new(FONT).unwrap(), pages: vec![Vec::new()], y: MARGIN };
        let width = WIDTH - 2.0 * MARGIN;
        let text = "Pwy sydd wedi gweld gwybodaeth eich plentyn ".repeat(10);
        let lines = writer.wrap(&text, BODY, width);
        assert!(lines.len() > 2);
        assert!(lines.iter().all(|line| writer.width(line, BODY) <= width));
        assert_eq!(lines.join(" "), text.trim_end(), "nothing lost");
        let long = "x".repeat(400);
        let broken = writer.wrap(&long, BODY, width);
        assert!(broken.len() > 1 && broken.concat() == long);
        assert!(writer.width("ŵŷąłż", BODY) > 0.0);
    }
}
