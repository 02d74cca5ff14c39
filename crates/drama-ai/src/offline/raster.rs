//! A tiny RGB canvas: gradients, shapes, 8×8 bitmap text, PNG in and out.

use font8x8::legacy::BASIC_LEGACY;

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// From hue (0–360), saturation and value (0–1).
    pub fn hsv(hue: f32, saturation: f32, value: f32) -> Self {
        let h = hue.rem_euclid(360.0) / 60.0;
        let c = value * saturation;
        let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
        let (r, g, b) = match h {
            h if h < 1.0 => (c, x, 0.0),
            h if h < 2.0 => (x, c, 0.0),
            h if h < 3.0 => (0.0, c, x),
            h if h < 4.0 => (0.0, x, c),
            h if h < 5.0 => (x, 0.0, c),
            _ => (c, 0.0, x),
        };
        let m = value - c;
        Self(channel(r + m), channel(g + m), channel(b + m))
    }

    /// Linear mix, `t` from 0 (self) to 1 (other).
    pub fn mix(self, other: Self, t: f32) -> Self {
        let m = |a: u8, b: u8| channel((f32::from(a) + (f32::from(b) - f32::from(a)) * t) / 255.0);
        Self(m(self.0, other.0), m(self.1, other.1), m(self.2, other.2))
    }

    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// Parses `#rrggbb`.
    pub fn parse_hex(s: &str) -> Option<Self> {
        let s = s.strip_prefix('#')?;
        if s.len() != 6 {
            return None;
        }
        let v = u32::from_str_radix(s, 16).ok()?;
        let [_, r, g, b] = v.to_be_bytes();
        Some(Self(r, g, b))
    }

    /// Black or white, whichever reads better on this colour.
    pub fn ink(self) -> Self {
        let luma = 299 * u32::from(self.0) + 587 * u32::from(self.1) + 114 * u32::from(self.2);
        if luma > 140_000 {
            Self(20, 20, 28)
        } else {
            Self(250, 250, 250)
        }
    }
}

fn channel(v: f32) -> u8 {
    // Clamped to 0..=255 first, so the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let c = (v * 255.0).round().clamp(0.0, 255.0) as u8;
    c
}

/// A packed RGB image.
#[derive(Clone)]
pub(crate) struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, fill: Rgb) -> Self {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&[fill.0, fill.1, fill.2]);
        }
        Self {
            width,
            height,
            pixels,
        }
    }

    /// A vertical gradient from `top` to `bottom` over rows `y0..y1`.
    pub fn vertical_gradient(&mut self, y0: usize, y1: usize, top: Rgb, bottom: Rgb) {
        let y1 = y1.min(self.height);
        let span = (y1.saturating_sub(y0)).max(1) as f32;
        for y in y0..y1 {
            let c = top.mix(bottom, (y - y0) as f32 / span);
            let row = &mut self.pixels[y * self.width * 3..(y + 1) * self.width * 3];
            for px in row.chunks_exact_mut(3) {
                px.copy_from_slice(&[c.0, c.1, c.2]);
            }
        }
    }

    pub fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        let x0 = clamp(x, self.width);
        let x1 = clamp(x + w, self.width);
        let y0 = clamp(y, self.height);
        let y1 = clamp(y + h, self.height);
        for yy in y0..y1 {
            let start = (yy * self.width + x0) * 3;
            let end = (yy * self.width + x1) * 3;
            for px in self.pixels[start..end].chunks_exact_mut(3) {
                px.copy_from_slice(&[c.0, c.1, c.2]);
            }
        }
    }

    pub fn ellipse(&mut self, cx: i64, cy: i64, rx: i64, ry: i64, c: Rgb) {
        if rx <= 0 || ry <= 0 {
            return;
        }
        for dy in -ry..=ry {
            // Width of the ellipse at this row.
            let f = 1.0 - (dy * dy) as f64 / (ry * ry) as f64;
            #[allow(clippy::cast_possible_truncation)]
            let half = ((rx as f64) * f.max(0.0).sqrt()) as i64;
            self.rect(cx - half, cy + dy, 2 * half + 1, 1, c);
        }
    }

    /// A stylised figure (head, hair, body) standing with its feet at `base_y`.
    pub fn figure(&mut self, cx: i64, base_y: i64, height: i64, body: Rgb, skin: Rgb, hair: Rgb) {
        let head_r = height / 7;
        let body_w = height * 2 / 5;
        let body_top = base_y - height + 2 * head_r + head_r / 3;
        self.ellipse(
            cx,
            base_y - height / 12,
            body_w / 2,
            height / 12,
            body.mix(Rgb(0, 0, 0), 0.3),
        );
        self.rect(
            cx - body_w / 2,
            body_top,
            body_w,
            base_y - body_top - height / 12,
            body,
        );
        self.ellipse(cx, body_top, body_w / 2, head_r / 2, body);
        let head_y = base_y - height + head_r;
        self.ellipse(cx, head_y, head_r, head_r, skin);
        self.rect(cx - head_r, head_y - head_r, 2 * head_r, head_r / 2, hair);
        self.ellipse(cx, head_y - head_r + head_r / 4, head_r, head_r / 3, hair);
        let eye = (head_r / 6).max(1);
        self.ellipse(cx - head_r / 3, head_y, eye, eye, Rgb(30, 30, 40));
        self.ellipse(cx + head_r / 3, head_y, eye, eye, Rgb(30, 30, 40));
    }

    /// Draws one line of text with 8×8 glyphs scaled by `scale`; returns the width drawn.
    pub fn text(&mut self, x: i64, y: i64, scale: i64, text: &str, c: Rgb) -> i64 {
        let mut cx = x;
        for ch in ascii(text).chars() {
            let code = if ch.is_ascii() && !ch.is_ascii_control() {
                ch as usize
            } else {
                '?' as usize
            };
            let glyph = BASIC_LEGACY.get(code).copied().unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.rect(cx + col * scale, y + row as i64 * scale, scale, scale, c);
                    }
                }
            }
            cx += 8 * scale;
        }
        cx - x
    }

    /// Draws text wrapped to `width` pixels, at most `max_lines` lines; returns the next `y`.
    #[allow(clippy::too_many_arguments)]
    pub fn paragraph(
        &mut self,
        x: i64,
        y: i64,
        width: i64,
        scale: i64,
        max_lines: usize,
        text: &str,
        c: Rgb,
        centred: bool,
    ) -> i64 {
        let per_line = usize::try_from((width / (8 * scale)).max(1)).unwrap_or(1);
        let lines = wrap(text, per_line, max_lines);
        let mut yy = y;
        for line in &lines {
            let line_w = i64::try_from(line.chars().count()).unwrap_or(0) * 8 * scale;
            let xx = if centred { x + (width - line_w) / 2 } else { x };
            self.text(xx, yy, scale, line, c);
            yy += 10 * scale;
        }
        yy
    }

    /// Nearest-neighbour resize.
    pub fn resized(&self, width: usize, height: usize) -> Self {
        let mut out = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            let sy = y * self.height / height;
            for x in 0..width {
                let sx = x * self.width / width;
                let i = (sy * self.width + sx) * 3;
                out.extend_from_slice(&self.pixels[i..i + 3]);
            }
        }
        Self {
            width,
            height,
            pixels: out,
        }
    }

    /// Encodes as an 8-bit RGB PNG with `tEXt` chunks (`iTXt` for a value outside Latin-1,
    /// which `tEXt` cannot hold: a label in Chinese or with an emoji).
    pub fn to_png(&self, text: &[(&str, String)]) -> Result<Vec<u8>, png::EncodingError> {
        let mut out = Vec::with_capacity(self.pixels.len() / 8);
        {
            let w = u32::try_from(self.width).unwrap_or(u32::MAX);
            let h = u32::try_from(self.height).unwrap_or(u32::MAX);
            let mut encoder = png::Encoder::new(&mut out, w, h);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_compression(png::Compression::Fast);
            for (k, v) in text {
                if v.chars().all(|c| u32::from(c) <= 0xFF) {
                    encoder.add_text_chunk((*k).to_owned(), v.clone())?;
                } else {
                    encoder.add_itxt_chunk((*k).to_owned(), v.clone())?;
                }
            }
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&self.pixels)?;
            writer.finish()?;
        }
        Ok(out)
    }

    /// Decodes a PNG into RGB (grey, alpha and palettes are expanded or dropped).
    pub fn from_png(bytes: &[u8]) -> Option<Self> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().ok()?;
        let mut buf = vec![0; reader.output_buffer_size()?];
        let info = reader.next_frame(&mut buf).ok()?;
        let (width, height) = (info.width as usize, info.height as usize);
        let channels = match info.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => return None,
        };
        let mut pixels = Vec::with_capacity(width * height * 3);
        for px in buf[..width * height * channels].chunks_exact(channels) {
            match channels {
                1 | 2 => pixels.extend_from_slice(&[px[0], px[0], px[0]]),
                _ => pixels.extend_from_slice(&px[..3]),
            }
        }
        Some(Self {
            width,
            height,
            pixels,
        })
    }
}

/// Typographic punctuation the 8×8 font lacks, spelled in ASCII.
fn ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\u{2014}' | '\u{2013}' | '\u{2212}' => out.push('-'),
            '\u{2026}' => out.push_str("..."),
            '\u{2018}' | '\u{2019}' => out.push('\''),
            '\u{201C}' | '\u{201D}' => out.push('"'),
            '\u{00A0}' => out.push(' '),
            other => out.push(other),
        }
    }
    out
}

fn clamp(v: i64, max: usize) -> usize {
    usize::try_from(v.max(0)).unwrap_or(0).min(max)
}

/// Greedy word wrap; the last line ends with `...` when text is left over.
pub(crate) fn wrap(text: &str, per_line: usize, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut words = text.split_whitespace().peekable();
    while let Some(word) = words.next() {
        // Widths are in characters (one glyph each), not bytes.
        let word: String = word.chars().take(per_line).collect();
        let needed = if current.is_empty() {
            word.chars().count()
        } else {
            current.chars().count() + 1 + word.chars().count()
        };
        if needed > per_line && !current.is_empty() {
            lines.push(std::mem::take(&mut current));
            if lines.len() == max_lines {
                if let Some(last) = lines.last_mut() {
                    let keep = per_line.saturating_sub(3);
                    *last = last.chars().take(keep).collect();
                    last.push_str("...");
                }
                return lines;
            }
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&word);
        if words.peek().is_none() {
            break;
        }
    }
    if !current.is_empty() && lines.len() < max_lines {
        lines.push(current);
    }
    lines
}

/// The `tEXt` value for `keyword` in a PNG, read without decoding the image.
pub(crate) fn png_text(bytes: &[u8], keyword: &str) -> Option<String> {
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = bytes.get(at + 8..at + 8 + len)?;
        if kind == b"tEXt"
            && let Some(nul) = data.iter().position(|b| *b == 0)
            && &data[..nul] == keyword.as_bytes()
        {
            return Some(String::from_utf8_lossy(&data[nul + 1..]).into_owned());
        }
        if kind == b"IDAT" || kind == b"IEND" {
            return None;
        }
        at += 12 + len;
    }
    None
}

#[cfg(test)]
mod wrap_tests {
    use super::wrap;

    #[test]
    fn multibyte_text_wraps_by_characters() {
        let lines = wrap(
            "Épisode · scène — «Fetch» ⭐⭐⭐ long text here that keeps going on",
            10,
            2,
        );
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.chars().count() <= 10), "{lines:?}");
        assert!(lines[1].ends_with("..."));
    }
}
