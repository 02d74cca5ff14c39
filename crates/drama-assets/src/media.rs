//! Content types: what the store accepts, how a type is recognised from its first bytes, and
//! which file extension it gets.

use std::fmt;

use crate::error::AssetError;

/// How many leading bytes are enough to recognise every supported type.
pub const SNIFF_LEN: usize = 512;

/// A content type the store accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaType {
    /// `image/png`
    Png,
    /// `image/jpeg`
    Jpeg,
    /// `image/webp`
    Webp,
    /// `image/gif`
    Gif,
    /// `video/mp4` (an ISO base media file that is not QuickTime)
    Mp4,
    /// `video/quicktime` (ISO base media with the `qt  ` brand)
    QuickTime,
    /// `video/webm`
    Webm,
    /// `audio/wav`
    Wav,
    /// `audio/mpeg`
    Mp3,
    /// `application/json`
    Json,
    /// `text/plain` (UTF-8)
    Text,
    /// `application/octet-stream`: no claim about the bytes; only generic uploads accept it.
    Binary,
}

/// The broad family of a [`MediaType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Still images.
    Image,
    /// Videos.
    Video,
    /// Sound.
    Audio,
    /// JSON and text documents.
    Document,
    /// Bytes with no declared meaning.
    Binary,
}

impl MediaType {
    /// Every accepted type.
    pub const ALL: [Self; 12] = [
        Self::Png,
        Self::Jpeg,
        Self::Webp,
        Self::Gif,
        Self::Mp4,
        Self::QuickTime,
        Self::Webm,
        Self::Wav,
        Self::Mp3,
        Self::Json,
        Self::Text,
        Self::Binary,
    ];

    /// The canonical MIME type, as stored and served.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Mp4 => "video/mp4",
            Self::QuickTime => "video/quicktime",
            Self::Webm => "video/webm",
            Self::Wav => "audio/wav",
            Self::Mp3 => "audio/mpeg",
            Self::Json => "application/json",
            Self::Text => "text/plain",
            Self::Binary => "application/octet-stream",
        }
    }

    /// The file extension keys use for this type (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Mp4 => "mp4",
            Self::QuickTime => "mov",
            Self::Webm => "webm",
            Self::Wav => "wav",
            Self::Mp3 => "mp3",
            Self::Json => "json",
            Self::Text => "txt",
            Self::Binary => "bin",
        }
    }

    /// The family of the type.
    pub fn kind(self) -> MediaKind {
        match self {
            Self::Png | Self::Jpeg | Self::Webp | Self::Gif => MediaKind::Image,
            Self::Mp4 | Self::QuickTime | Self::Webm => MediaKind::Video,
            Self::Wav | Self::Mp3 => MediaKind::Audio,
            Self::Json | Self::Text => MediaKind::Document,
            Self::Binary => MediaKind::Binary,
        }
    }

    /// Parses a declared MIME type (`Content-Type` header value). Parameters such as
    /// `; charset=utf-8` are ignored; common aliases (`image/jpg`, `audio/x-wav`, `audio/mp3`)
    /// are understood.
    ///
    /// # Errors
    /// [`AssetError::UnsupportedContentType`] for any other type.
    pub fn from_mime(declared: &str) -> Result<Self, AssetError> {
        let essence = declared
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let found = match essence.as_str() {
            "image/png" => Self::Png,
            "image/jpeg" | "image/jpg" | "image/pjpeg" => Self::Jpeg,
            "image/webp" => Self::Webp,
            "image/gif" => Self::Gif,
            "video/mp4" => Self::Mp4,
            "video/quicktime" => Self::QuickTime,
            "video/webm" => Self::Webm,
            "audio/wav" | "audio/wave" | "audio/x-wav" | "audio/vnd.wave" => Self::Wav,
            "audio/mpeg" | "audio/mp3" => Self::Mp3,
            "application/json" | "text/json" => Self::Json,
            "text/plain" => Self::Text,
            "application/octet-stream" => Self::Binary,
            _ => return Err(AssetError::UnsupportedContentType(declared.to_owned())),
        };
        Ok(found)
    }

    /// The type a file extension stands for (case-insensitive, without the dot), for keys
    /// written before content checks existed.
    pub fn from_extension(ext: &str) -> Option<Self> {
        let found = match ext.to_ascii_lowercase().as_str() {
            "png" => Self::Png,
            "jpg" | "jpeg" => Self::Jpeg,
            "webp" => Self::Webp,
            "gif" => Self::Gif,
            "mp4" | "m4v" => Self::Mp4,
            "mov" => Self::QuickTime,
            "webm" => Self::Webm,
            "wav" => Self::Wav,
            "mp3" => Self::Mp3,
            "json" => Self::Json,
            "txt" => Self::Text,
            "bin" => Self::Binary,
            _ => return None,
        };
        Some(found)
    }

    /// Recognises the type from the first bytes of a file ([`SNIFF_LEN`] are enough).
    /// Returns `None` for text, unknown formats and formats the store does not accept
    /// (HEIC, AVIF, Matroska, …).
    pub fn detect(head: &[u8]) -> Option<Self> {
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Some(Self::Png);
        }
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Some(Self::Jpeg);
        }
        if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
            return Some(Self::Gif);
        }
        if head.len() >= 12 && &head[..4] == b"RIFF" {
            return match &head[8..12] {
                b"WEBP" => Some(Self::Webp),
                b"WAVE" => Some(Self::Wav),
                _ => None,
            };
        }
        if head.len() >= 12 && &head[4..8] == b"ftyp" {
            return detect_iso_media(&head[8..12]);
        }
        if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
            // EBML: WebM and Matroska share the container; the DocType tells them apart.
            let window = &head[..head.len().min(64)];
            return window
                .windows(4)
                .any(|w| w == b"webm")
                .then_some(Self::Webm);
        }
        if head.starts_with(b"ID3") || is_mpeg_audio_frame(head) {
            return Some(Self::Mp3);
        }
        if looks_like_json(head) {
            return Some(Self::Json);
        }
        None
    }

    /// The name of a still-image format the store does not accept (`HEIC` as iPhones take
    /// photos, `HEIF`, `AVIF`) when `head` begins one: an ISO base media file whose major
    /// brand is one of theirs. `None` for anything else, accepted formats included.
    pub fn unaccepted_image(head: &[u8]) -> Option<&'static str> {
        if head.len() < 12 || &head[4..8] != b"ftyp" {
            return None;
        }
        match &head[8..12] {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" => Some("HEIC"),
            b"mif1" | b"msf1" => Some("HEIF"),
            b"avif" | b"avis" => Some("AVIF"),
            _ => None,
        }
    }

    /// Checks that `head` (the first bytes of the object, or all of it when shorter than
    /// [`SNIFF_LEN`]) is consistent with `self` as the declared type.
    ///
    /// # Errors
    /// [`AssetError::ContentMismatch`] naming what the bytes look like instead.
    pub fn check_content(self, head: &[u8]) -> Result<(), AssetError> {
        let detected = Self::detect(head);
        let consistent = match self {
            Self::Binary => true,
            Self::Text => matches!(detected, None | Some(Self::Json)) && looks_like_text(head),
            // The ftyp brand is advisory; players accept either container name.
            Self::Mp4 | Self::QuickTime => matches!(detected, Some(Self::Mp4 | Self::QuickTime)),
            declared => detected == Some(declared),
        };
        if consistent {
            return Ok(());
        }
        let detail = match detected {
            Some(found) => format!("the bytes are {}", found.mime()),
            None if head.is_empty() => "the content is empty".to_owned(),
            None if self == Self::Text => "the bytes are not UTF-8 text".to_owned(),
            None => "the bytes are not a recognised format".to_owned(),
        };
        Err(AssetError::ContentMismatch {
            declared: self.mime().to_owned(),
            detail,
        })
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

fn detect_iso_media(major_brand: &[u8]) -> Option<MediaType> {
    match major_brand {
        b"qt  " => Some(MediaType::QuickTime),
        // Still-image and audio-only brands of the same container are not videos.
        b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" | b"avif"
        | b"avis" | b"M4A " | b"M4B " | b"M4P " => None,
        _ => Some(MediaType::Mp4),
    }
}

fn is_mpeg_audio_frame(head: &[u8]) -> bool {
    // Frame sync (11 bits set), MPEG version not "reserved", layer III.
    head.len() >= 4
        && head[0] == 0xFF
        && head[1] & 0xE0 == 0xE0
        && (head[1] >> 3) & 0b11 != 0b01
        && (head[1] >> 1) & 0b11 == 0b01
        && head[2] >> 4 != 0b1111
}

fn looks_like_json(head: &[u8]) -> bool {
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let mut rest = body.iter().copied().skip_while(u8::is_ascii_whitespace);
    match rest.next() {
        Some(b'{') => matches!(
            rest.find(|b| !b.is_ascii_whitespace()),
            Some(b'"' | b'}') | None
        ),
        Some(b'[') => true,
        _ => false,
    }
}

fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        // A multi-byte character cut by the sniff window is fine; anything else is not text.
        Err(e) if e.error_len().is_none() && head.len() - e.valid_up_to() < 4 => {
            match std::str::from_utf8(&head[..e.valid_up_to()]) {
                Ok(s) => s,
                Err(_) => return false,
            }
        }
        Err(_) => return false,
    };
    !valid
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(brand: &[u8; 4]) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 0x18];
        v.extend_from_slice(b"ftyp");
        v.extend_from_slice(brand);
        v.extend_from_slice(&[0; 12]);
        v
    }

    #[test]
    fn recognises_every_supported_format() {
        let cases: Vec<(Vec<u8>, MediaType)> = vec![
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), MediaType::Png),
            (vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], MediaType::Jpeg),
            (b"RIFF\x24\0\0\0WEBPVP8 ".to_vec(), MediaType::Webp),
            (b"GIF89a\x01\0\x01\0".to_vec(), MediaType::Gif),
            (iso(b"isom"), MediaType::Mp4),
            (iso(b"mp42"), MediaType::Mp4),
            (iso(b"qt  "), MediaType::QuickTime),
            (
                b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm".to_vec(),
                MediaType::Webm,
            ),
            (b"RIFF\x24\0\0\0WAVEfmt ".to_vec(), MediaType::Wav),
            (b"ID3\x04\0\0\0\0\0\0".to_vec(), MediaType::Mp3),
            (vec![0xFF, 0xFB, 0x90, 0x64], MediaType::Mp3),
            (b"  \n{\"a\": 1}".to_vec(), MediaType::Json),
            (b"\xEF\xBB\xBF[1,2]".to_vec(), MediaType::Json),
        ];
        for (bytes, expected) in cases {
            assert_eq!(MediaType::detect(&bytes), Some(expected), "{expected}");
            assert!(expected.check_content(&bytes).is_ok(), "{expected}");
        }
    }

    #[test]
    fn refuses_lookalikes() {
        assert_eq!(MediaType::detect(&iso(b"heic")), None);
        assert_eq!(MediaType::unaccepted_image(&iso(b"heic")), Some("HEIC"));
        assert_eq!(MediaType::unaccepted_image(&iso(b"mif1")), Some("HEIF"));
        assert_eq!(MediaType::unaccepted_image(&iso(b"avif")), Some("AVIF"));
        assert_eq!(MediaType::unaccepted_image(&iso(b"isom")), None);
        assert_eq!(MediaType::unaccepted_image(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(
            MediaType::detect(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska"),
            None
        );
        assert_eq!(MediaType::detect(b"hello world"), None);
        assert_eq!(MediaType::detect(b"{not json"), None);
        assert_eq!(MediaType::detect(b""), None);
        // JPEG's marker is not an MPEG frame header.
        assert_eq!(
            MediaType::detect(&[0xFF, 0xD8, 0xFF]),
            Some(MediaType::Jpeg)
        );
    }

    #[test]
    fn a_declared_type_must_match_the_bytes() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        let err = MediaType::Jpeg.check_content(png).unwrap_err();
        assert!(err.to_string().contains("image/png"), "{err}");
        assert!(MediaType::Png.check_content(b"").is_err());
        assert!(MediaType::Mp4.check_content(&iso(b"qt  ")).is_ok());
        assert!(MediaType::Binary.check_content(png).is_ok());
        assert!(MediaType::Text.check_content("héllo\n".as_bytes()).is_ok());
        assert!(MediaType::Text.check_content(png).is_err());
        // A character cut at the end of the sniff window is still text.
        assert!(MediaType::Text.check_content(&"é".as_bytes()[..1]).is_ok());
        assert!(MediaType::Json.check_content(b"<html>").is_err());
    }

    #[test]
    fn parses_declared_types_and_aliases() {
        assert_eq!(
            MediaType::from_mime("image/JPG").ok(),
            Some(MediaType::Jpeg)
        );
        assert_eq!(
            MediaType::from_mime("application/json; charset=utf-8").ok(),
            Some(MediaType::Json)
        );
        assert_eq!(
            MediaType::from_mime("audio/x-wav").ok(),
            Some(MediaType::Wav)
        );
        assert!(matches!(
            MediaType::from_mime("text/html"),
            Err(AssetError::UnsupportedContentType(_))
        ));
        for t in MediaType::ALL {
            assert_eq!(MediaType::from_mime(t.mime()).ok(), Some(t));
            assert_eq!(MediaType::from_extension(t.extension()), Some(t));
        }
    }
}
