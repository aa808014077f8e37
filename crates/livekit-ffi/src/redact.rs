//! Keeps secrets out of logs and error messages: LiveKit access tokens (JWTs) travel in URLs
//! (`access_token=`) and may be echoed by the engine's own messages.

use std::borrow::Cow;

/// Replaces JWT-shaped substrings and `access_token=` values with `[redacted]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !text.contains("eyJ") && !text.contains("access_token=") && !text.contains("token=") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let jwt = rest.find("eyJ");
        let query = rest.find("token=").map(|at| at + "token=".len());
        let next = match (jwt, query) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        out.push_str(&rest[..next]);
        let tail = &rest[next..];
        let secret_len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '%')))
            .unwrap_or(tail.len());
        if secret_len == 0 {
            // "token=" followed by nothing secret; keep one char and move on.
            let step = tail.chars().next().map_or(1, char::len_utf8);
            out.push_str(&tail[..step]);
            rest = &tail[step..];
        } else {
            out.push_str("[redacted]");
            rest = &tail[secret_len..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn tokens_in_urls_and_bare_jwts_are_removed() {
        let text = "failed ws://h:1/rtc?access_token=eyJhbGciOi.eyJzdWIi.sig&auto=1 and eyJabc.def.ghi end";
        let clean = redact(text);
        assert!(!clean.contains("eyJ"), "no JWT may survive: {clean}");
        assert!(clean.contains("auto=1"), "other query parameters stay: {clean}");
        assert!(clean.ends_with("end"), "text after a token stays: {clean}");
    }

    #[test]
    fn text_without_secrets_is_untouched() {
        assert_eq!(redact("could not connect: timeout"), "could not connect: timeout");
    }
}
