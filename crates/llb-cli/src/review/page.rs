//! One self-contained HTML page: inline CSS, the page's data as JSON, inline JavaScript; no
//! network. Images are files beside the page, referenced by relative paths.

use serde::Serialize;

/// The style sheet both pages share.
const STYLE: &str = include_str!("style.css");
/// DOM helpers (`el`, `fmt`) every page script uses; placed before it.
const DOM: &str = include_str!("dom.js");

/// A complete HTML page titled `title`, whose script `script` (after the shared DOM helpers of
/// `dom.js`) reads `data` from the element
/// `#data` (JSON, with `<` escaped so that no text in it can close the script element).
pub(crate) fn html(title: &str, data: &impl Serialize, script: &str) -> anyhow::Result<String> {
    let json = serde_json::to_string(data)?.replace('<', "\\u003c");
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <div id=\"app\"><p class=\"loading\">Loading…</p></div>\n\
         <script id=\"data\" type=\"application/json\">{json}</script>\n\
         <script>\n{DOM}{script}</script>\n</body>\n</html>\n",
        escape(title)
    ))
}

/// `text` with the characters HTML gives a meaning escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A relative file path as a URL path: every byte but `A–Z a–z 0–9 - . _ ~ /` percent-encoded,
/// so that names with `#`, `?`, `%` or spaces still load.
pub(crate) fn url_path(relative: &str) -> String {
    relative
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_encode_what_a_url_would_misread() {
        assert_eq!(url_path("overlays/a b#1?%é.png"), "overlays/a%20b%231%3F%25%C3%A9.png");
    }

    #[test]
    fn data_cannot_close_the_script_and_titles_are_escaped() {
        let page =
            html("a <b> & \"c\"", &serde_json::json!({"id": "</script><x>"}), "run();\n").unwrap();
        assert_eq!(page.matches("</script>").count(), 2, "only the two real closing tags");
        assert!(page.contains(r#""id":"\u003c/script>\u003cx>""#), "{page}");
        assert!(page.contains("<title>a &lt;b&gt; &amp; &quot;c&quot;</title>"));
        assert!(!page.contains("http://") && !page.contains("https://"), "no network reference");
    }
}
