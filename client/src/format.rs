//! mIRC formatting (bold, italics, underline, reverse, strike-through, the 16 mIRC
//! colours) in message text: turned into ANSI SGR sequences for a colour terminal, or
//! removed for a pipe or a terminal without colour.
//!
//! Input is text that [`crate::render`] has already cleaned of every other control
//! character, so the only escape sequences that reach the terminal are the SGR ones
//! built here. Owns: the codes and their mapping. Must not: pass through any byte of
//! a peer's text as a control sequence.

/// Bold toggle.
const BOLD: char = '\x02';
/// Colour: `\x03FG[,BG]` (one or two digits each); alone, back to the default colours.
const COLOUR: char = '\x03';
/// Hex colour `\x04RRGGBB[,RRGGBB]`: not rendered, its digits are skipped.
const HEX_COLOUR: char = '\x04';
/// Monospace toggle: not rendered (a terminal is monospace already).
const MONOSPACE: char = '\x11';
/// Reverse video toggle.
const REVERSE: char = '\x16';
/// Italics toggle.
const ITALIC: char = '\x1d';
/// Strike-through toggle.
const STRIKE: char = '\x1e';
/// Underline toggle.
const UNDERLINE: char = '\x1f';
/// Resets every attribute.
const RESET: char = '\x0f';

/// The formatting codes kept in rendered text (every other control is removed).
pub fn is_format_code(c: char) -> bool {
    matches!(
        c,
        BOLD | COLOUR | HEX_COLOUR | MONOSPACE | REVERSE | ITALIC | STRIKE | UNDERLINE | RESET
    )
}

/// The attributes in force for a stretch of text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub bold: bool,
    pub italic: bool,
    pub underline: bool,
    pub reverse: bool,
    pub strike: bool,
    /// mIRC colour numbers 0-15 (others are shown in the default colour).
    pub foreground: Option<u8>,
    pub background: Option<u8>,
}

impl Style {
    /// The SGR sequence that sets exactly this style from any other.
    fn sgr(&self) -> String {
        let mut codes = vec!["0".to_string()];
        for (on, code) in [
            (self.bold, "1"),
            (self.italic, "3"),
            (self.underline, "4"),
            (self.reverse, "7"),
            (self.strike, "9"),
        ] {
            if on {
                codes.push(code.to_string());
            }
        }
        if let Some(fg) = self.foreground.and_then(ansi_colour) {
            codes.push(fg.to_string());
        }
        if let Some(bg) = self.background.and_then(ansi_colour) {
            codes.push((bg + 10).to_string());
        }
        format!("\x1b[{}m", codes.join(";"))
    }
}

/// The ANSI foreground code of mIRC colour `n` (0-15); its background is 10 more.
fn ansi_colour(n: u8) -> Option<u8> {
    const MIRC_TO_ANSI: [u8; 16] = [
        97, // 0 white
        30, // 1 black
        34, // 2 blue (navy)
        32, // 3 green
        91, // 4 red
        31, // 5 brown (maroon)
        35, // 6 purple
        33, // 7 orange (olive)
        93, // 8 yellow
        92, // 9 light green
        36, // 10 cyan (teal)
        96, // 11 light cyan
        94, // 12 light blue
        95, // 13 pink
        90, // 14 grey
        37, // 15 light grey
    ];
    MIRC_TO_ANSI.get(n as usize).copied()
}

/// Splits formatted text into stretches of one style each.
pub fn segments(text: &str) -> Vec<(Style, String)> {
    let mut out: Vec<(Style, String)> = Vec::new();
    let mut style = Style::default();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            BOLD => style.bold = !style.bold,
            ITALIC => style.italic = !style.italic,
            UNDERLINE => style.underline = !style.underline,
            REVERSE => style.reverse = !style.reverse,
            STRIKE => style.strike = !style.strike,
            MONOSPACE => {}
            RESET => style = Style::default(),
            COLOUR => match take_number(&mut chars) {
                None => {
                    style.foreground = None;
                    style.background = None;
                }
                Some(fg) => {
                    // 16-98 (extended) and 99 (default) are shown in the default colour.
                    style.foreground = Some(fg).filter(|n| *n < 16);
                    let mut ahead = chars.clone();
                    if ahead.next() == Some(',') && ahead.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                        style.background = take_number(&mut chars).filter(|n| *n < 16);
                    }
                }
            },
            HEX_COLOUR => {
                skip_hex(&mut chars);
                let mut ahead = chars.clone();
                if ahead.next() == Some(',') && ahead.peek().is_some_and(char::is_ascii_hexdigit) {
                    chars.next();
                    skip_hex(&mut chars);
                }
            }
            c => match out.last_mut() {
                Some((last, text)) if *last == style => text.push(c),
                _ => out.push((style, c.to_string())),
            },
        }
    }
    out
}

/// Up to two digits after `\x03`, as a number.
fn take_number(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<u8> {
    let mut number: Option<u8> = None;
    for _ in 0..2 {
        let Some(digit) = chars.next_if(char::is_ascii_digit) else {
            break;
        };
        number = Some(number.unwrap_or(0) * 10 + (digit as u8 - b'0'));
    }
    number
}

/// Up to six hex digits after `\x04`.
fn skip_hex(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for _ in 0..6 {
        if chars.next_if(char::is_ascii_hexdigit).is_none() {
            break;
        }
    }
}

/// The text with formatting turned into ANSI SGR sequences, ending in the default
/// style.
pub fn to_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut styled = false;
    for (style, stretch) in segments(text) {
        if style != Style::default() || styled {
            out.push_str(&style.sgr());
            styled = style != Style::default();
        }
        out.push_str(&stretch);
    }
    if styled {
        out.push_str("\x1b[0m");
    }
    out
}

/// The text without its formatting codes.
pub fn strip(text: &str) -> String {
    segments(text).into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_and_bold_become_sgr() {
        assert_eq!(to_ansi("plain"), "plain");
        assert_eq!(to_ansi("\x02bold\x02 x"), "\x1b[0;1mbold\x1b[0m x");
        assert_eq!(
            to_ansi("\x0304,12red on blue\x03 x"),
            "\x1b[0;91;104mred on blue\x1b[0m x"
        );
        assert_eq!(to_ansi("\x033green"), "\x1b[0;32mgreen\x1b[0m");
        assert_eq!(
            to_ansi("\x02\x1dboth\x0f none"),
            "\x1b[0;1;3mboth\x1b[0m none"
        );
        // 99 is "default": no colour code, text kept.
        assert_eq!(to_ansi("\x0399x"), "x");
    }

    #[test]
    fn digits_after_a_colour_are_text_beyond_two() {
        assert_eq!(strip("\x03123"), "3");
        assert_eq!(strip("\x0312,done 3"), ",done 3");
        assert_eq!(strip("a\x03,5b"), "a,5b");
        assert_eq!(strip("\x04ff0000,00ff00hex"), "hex");
        assert_eq!(strip("\x02\x1f\x16\x1e\x11x\x0f"), "x");
    }
}
