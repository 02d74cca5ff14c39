//! Joining MP4 clips that share their codec parameters without decoding anything: the
//! samples of each track are laid end to end, their tables concatenated, their bytes copied
//! chunk by chunk in each clip's own interleaving, `moov` first so playback starts at once.
//!
//! Clips join only when every one has the same tracks (by handler, in order) with byte-equal
//! sample descriptions (codec, profile, SPS/PPS, dimensions, sample rate, …), the same media
//! clocks and the same edit start (the B-frame or AAC-priming shift, if any). Then one edit
//! with that start presents the joined track, and each clip's frames play exactly where its
//! predecessor's ended. Each track is joined on its own clock, so an audio track whose clips
//! are slightly longer or shorter than their video drifts by at most that difference (under
//! one audio frame per clip for AAC).

use super::mp4::{Atom, Chunk, Movie, Refused, Sample, Track, atoms, read, refuse};

/// Joins `clips`, in order, into one MP4.
///
/// # Errors
/// [`Refused`] naming why the clips cannot be joined without re-encoding (differing codec
/// parameters, tracks or clocks) or read at all.
pub(crate) fn join(clips: &[&[u8]]) -> Result<Vec<u8>, Refused> {
    let movies: Vec<Movie<'_>> = clips
        .iter()
        .enumerate()
        .map(|(i, c)| read(c).map_err(|e| Refused(format!("clip {}: {e}", i + 1))))
        .collect::<Result<_, _>>()?;
    let Some(first) = movies.first() else {
        return refuse("there is no clip to join");
    };
    check_compatible(&movies)?;
    let tracks: Vec<Joined<'_>> = (0..first.tracks.len())
        .map(|t| Joined::new(movies.iter().map(|m| &m.tracks[t]).collect()))
        .collect();

    // Where every chunk goes: clip by clip, each clip's chunks of all tracks in their order in
    // that clip's file (its own interleaving).
    let mut layout: Vec<Vec<u64>> = tracks.iter().map(|_| Vec::new()).collect();
    let mut copies: Vec<(usize, u64, u64)> = Vec::new();
    let mut position = 0u64;
    for (clip, movie) in movies.iter().enumerate() {
        let mut order: Vec<(u64, usize, u64)> = movie
            .tracks
            .iter()
            .enumerate()
            .flat_map(|(t, track)| track.chunks.iter().map(move |c| (c.offset, t, c.len)))
            .collect();
        order.sort_by_key(|(offset, t, _)| (*offset, *t));
        for (offset, track, len) in order {
            layout[track].push(position);
            copies.push((clip, offset, len));
            position += len;
        }
    }
    let payload = position;

    let ftyp = first.ftyp.map_or_else(default_ftyp, |f| f.whole.to_vec());
    let wide = payload + 16 + 1024 * 1024 > u64::from(u32::MAX);
    let mdat_header: u64 = if payload + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };
    // The offsets do not change the size of moov (their width is fixed), so it is built once
    // to learn its size and again with the real offsets.
    let probe = moov(first, &tracks, &layout, 0, wide)?;
    let base = (ftyp.len() + probe.len()) as u64 + mdat_header;
    let moov = moov(first, &tracks, &layout, base, wide)?;

    let total = usize::try_from(base + payload).map_err(|_| Refused("too large".into()))?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&ftyp);
    out.extend_from_slice(&moov);
    if mdat_header == 16 {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&(payload + 16).to_be_bytes());
    } else {
        out.extend_from_slice(&u32_of(payload + 8)?.to_be_bytes());
        out.extend_from_slice(b"mdat");
    }
    for (clip, offset, len) in copies {
        let (start, end) = (
            usize::try_from(offset).unwrap_or(usize::MAX),
            usize::try_from(offset + len).unwrap_or(usize::MAX),
        );
        match clips[clip].get(start..end) {
            Some(bytes) => out.extend_from_slice(bytes),
            None => return refuse(format!("clip {}: a chunk lies beyond its end", clip + 1)),
        }
    }
    Ok(out)
}

fn check_compatible(movies: &[Movie<'_>]) -> Result<(), Refused> {
    let first = &movies[0];
    for track in &first.tracks {
        if !matches!(&track.handler, b"vide" | b"soun") {
            return refuse(format!(
                "clip 1 has a {} track, only video and audio are joined here",
                String::from_utf8_lossy(&track.handler)
            ));
        }
    }
    for (i, movie) in movies.iter().enumerate().skip(1) {
        let n = i + 1;
        if movie.tracks.len() != first.tracks.len() {
            return refuse(format!(
                "clip {n} has {} tracks, clip 1 has {}",
                movie.tracks.len(),
                first.tracks.len()
            ));
        }
        for (a, b) in first.tracks.iter().zip(&movie.tracks) {
            let what = kind_of(a);
            if a.handler != b.handler {
                return refuse(format!("clip {n}'s tracks differ from clip 1's"));
            }
            if codec_parameters(a)? != codec_parameters(b)? {
                return refuse(format!(
                    "clip {n}'s {what} has other codec parameters than clip 1's"
                ));
            }
            if a.timescale != b.timescale {
                return refuse(format!(
                    "clip {n}'s {what} runs on another clock than clip 1's"
                ));
            }
            if a.edit_start != b.edit_start {
                return refuse(format!(
                    "clip {n}'s {what} starts at another point of its media than clip 1's"
                ));
            }
        }
    }
    Ok(())
}

/// What of a track's sample description must be equal for samples to be interchangeable:
/// the entry (codec, dimensions or channels and rate, decoder configuration such as the
/// SPS/PPS in `avcC`) without the statistics an encoder writes per file: the `btrt` box, and
/// the buffer and bitrate fields of an MPEG-4 audio `esds` (only its object type, stream type
/// and decoder-specific configuration count).
fn codec_parameters(track: &Track<'_>) -> Result<Vec<u8>, Refused> {
    let (_, body) = track.stsd.full()?;
    let entries = atoms(body.get(4..).unwrap_or_default())?;
    let Some(entry) = entries.first() else {
        return refuse("a track has no sample description");
    };
    // The fixed fields of a visual (78 bytes) or a version-0 sound (28 bytes) sample entry;
    // other entries are compared whole.
    let fixed = match &track.handler {
        b"vide" => 78,
        b"soun" if entry.payload.get(8..10) == Some(&[0, 0]) => 28,
        _ => return Ok(entry.whole.to_vec()),
    };
    let (Some(head), Some(rest)) = (entry.payload.get(..fixed), entry.payload.get(fixed..)) else {
        return Ok(entry.whole.to_vec());
    };
    let Ok(children) = atoms(rest) else {
        return Ok(entry.whole.to_vec());
    };
    let mut out = entry.kind.to_vec();
    out.extend_from_slice(head);
    for child in children.iter().filter(|c| &c.kind != b"btrt") {
        out.extend_from_slice(&child.kind);
        match (&child.kind, esds_essentials(child)) {
            (b"esds", Some(essentials)) => out.extend_from_slice(&essentials),
            _ => out.extend_from_slice(child.payload),
        }
    }
    Ok(out)
}

/// Object type, stream type and decoder-specific configuration of an `esds` box.
fn esds_essentials(esds: &Atom<'_>) -> Option<Vec<u8>> {
    let (_, body) = esds.full().ok()?;
    let (tag, es) = descriptor(body)?;
    if tag != 0x03 {
        return None;
    }
    let flags = *es.get(2)?;
    let mut at = 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*es.get(at)?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let (tag, config) = descriptor(es.get(at..)?)?;
    if tag != 0x04 || config.len() < 13 {
        return None;
    }
    let mut out = vec![config[0], config[1]];
    if let Some((0x05, specific)) = config.get(13..).and_then(descriptor) {
        out.extend_from_slice(specific);
    }
    Some(out)
}

/// An MPEG-4 descriptor: its tag and contents (the size takes one to four 7-bit bytes).
fn descriptor(bytes: &[u8]) -> Option<(u8, &[u8])> {
    let tag = *bytes.first()?;
    let mut size = 0usize;
    let mut at = 1;
    loop {
        let b = *bytes.get(at)?;
        size = (size << 7) | usize::from(b & 0x7F);
        at += 1;
        if b & 0x80 == 0 || at > 4 {
            break;
        }
    }
    Some((tag, bytes.get(at..at.checked_add(size)?)?))
}

fn kind_of(track: &Track<'_>) -> &'static str {
    match &track.handler {
        b"vide" => "video",
        b"soun" => "audio",
        _ => "track",
    }
}

/// One track of the joined file: the same track of every clip, end to end.
struct Joined<'a> {
    parts: Vec<&'a Track<'a>>,
    samples: Vec<Sample>,
    chunk_sizes: Vec<usize>,
}

impl<'a> Joined<'a> {
    fn new(parts: Vec<&'a Track<'a>>) -> Self {
        let samples = parts
            .iter()
            .flat_map(|t| t.samples.iter().copied())
            .collect();
        let chunk_sizes = parts
            .iter()
            .flat_map(|t| t.chunks.iter().map(|c: &Chunk| c.samples))
            .collect();
        Self {
            parts,
            samples,
            chunk_sizes,
        }
    }

    fn head(&self) -> &'a Track<'a> {
        self.parts[0]
    }

    fn media_duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.delta)).sum()
    }
}

fn moov(
    first: &Movie<'_>,
    tracks: &[Joined<'_>],
    layout: &[Vec<u64>],
    base: u64,
    wide: bool,
) -> Result<Vec<u8>, Refused> {
    let movie_scale = u64::from(first.timescale);
    let mut longest = 0u64;
    let mut traks = Vec::new();
    for (track, offsets) in tracks.iter().zip(layout) {
        let head = track.head();
        let media = track.media_duration();
        let presented = media.saturating_sub(u64::try_from(head.edit_start).unwrap_or(0));
        let in_movie = presented * movie_scale / u64::from(head.timescale);
        longest = longest.max(in_movie);
        let tkhd = with_duration(head.tkhd, in_movie, [16, 24])?;
        let edts = head.has_edit.then(|| {
            let mut elst = Vec::new();
            elst.extend_from_slice(&1u32.to_be_bytes());
            elst.extend_from_slice(&in_movie.to_be_bytes());
            elst.extend_from_slice(&head.edit_start.to_be_bytes());
            elst.extend_from_slice(&[0, 1, 0, 0]);
            boxed(b"edts", &full_box(b"elst", 1, 0, &elst))
        });
        let mdhd = with_duration(head.mdhd, media, [12, 20])?;
        let mut minf = Vec::new();
        if let Some(header) = head.media_header {
            minf.extend_from_slice(header.whole);
        }
        match head.dinf {
            Some(dinf) => minf.extend_from_slice(dinf.whole),
            None => minf.extend_from_slice(&default_dinf()),
        }
        minf.extend_from_slice(&boxed(b"stbl", &sample_table(track, offsets, base, wide)));
        let mdia = [mdhd, head.hdlr.whole.to_vec(), boxed(b"minf", &minf)].concat();
        let mut trak = tkhd;
        if let Some(edts) = edts {
            trak.extend_from_slice(&edts);
        }
        trak.extend_from_slice(&boxed(b"mdia", &mdia));
        traks.push(boxed(b"trak", &trak));
    }
    let mvhd = with_duration(first.mvhd, longest, [12, 20])?;
    Ok(boxed(b"moov", &[mvhd, traks.concat()].concat()))
}

fn sample_table(track: &Joined<'_>, offsets: &[u64], base: u64, wide: bool) -> Vec<u8> {
    let samples = &track.samples;
    let mut out = track.head().stsd.whole.to_vec();

    let mut stts: Vec<(u32, u32)> = Vec::new();
    for s in samples {
        match stts.last_mut() {
            Some((count, delta)) if *delta == s.delta => *count += 1,
            _ => stts.push((1, s.delta)),
        }
    }
    out.extend_from_slice(&full_box(b"stts", 0, 0, &pairs(&stts)));

    if track.parts.iter().any(|t| t.has_composition) {
        let mut ctts: Vec<(u32, u32)> = Vec::new();
        for s in samples {
            let value = s.composition.cast_unsigned();
            match ctts.last_mut() {
                Some((count, v)) if *v == value => *count += 1,
                _ => ctts.push((1, value)),
            }
        }
        let version = u8::from(samples.iter().any(|s| s.composition < 0));
        out.extend_from_slice(&full_box(b"ctts", version, 0, &pairs(&ctts)));
    }

    if track.parts.iter().any(|t| t.has_sync_table) {
        let sync: Vec<u32> = samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.sync)
            .map(|(i, _)| u32::try_from(i + 1).unwrap_or(u32::MAX))
            .collect();
        let mut body = len32(sync.len()).to_be_bytes().to_vec();
        for n in sync {
            body.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&full_box(b"stss", 0, 0, &body));
    }

    let mut stsc: Vec<(u32, u32)> = Vec::new();
    for (i, per_chunk) in track.chunk_sizes.iter().enumerate() {
        let per_chunk = len32(*per_chunk);
        if stsc.last().is_none_or(|(_, n)| *n != per_chunk) {
            stsc.push((len32(i + 1), per_chunk));
        }
    }
    let mut body = len32(stsc.len()).to_be_bytes().to_vec();
    for (first, per_chunk) in stsc {
        for v in [first, per_chunk, 1] {
            body.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.extend_from_slice(&full_box(b"stsc", 0, 0, &body));

    let uniform = samples
        .first()
        .map(|s| s.size)
        .filter(|size| samples.iter().all(|s| s.size == *size));
    let mut body = uniform.unwrap_or(0).to_be_bytes().to_vec();
    body.extend_from_slice(&len32(samples.len()).to_be_bytes());
    if uniform.is_none() {
        for s in samples {
            body.extend_from_slice(&s.size.to_be_bytes());
        }
    }
    out.extend_from_slice(&full_box(b"stsz", 0, 0, &body));

    let mut body = len32(offsets.len()).to_be_bytes().to_vec();
    for offset in offsets {
        let at = base + offset;
        if wide {
            body.extend_from_slice(&at.to_be_bytes());
        } else {
            body.extend_from_slice(&u32::try_from(at).unwrap_or(u32::MAX).to_be_bytes());
        }
    }
    out.extend_from_slice(&full_box(if wide { b"co64" } else { b"stco" }, 0, 0, &body));
    out
}

/// A copy of a full box (`mvhd`, `tkhd`, `mdhd`) with its duration field replaced; the field
/// sits at `at[0]` (version 0, 32 bits) or `at[1]` (version 1, 64 bits) bytes into the body.
fn with_duration(atom: Atom<'_>, duration: u64, at: [usize; 2]) -> Result<Vec<u8>, Refused> {
    let (version, body) = atom.full()?;
    let mut body = body.to_vec();
    let (offset, width) = if version == 1 { (at[1], 8) } else { (at[0], 4) };
    let Some(field) = body.get_mut(offset..offset + width) else {
        return refuse(format!("{} box is truncated", atom.name()));
    };
    if version == 1 {
        field.copy_from_slice(&duration.to_be_bytes());
    } else {
        field.copy_from_slice(&u32_of(duration)?.to_be_bytes());
    }
    let flags = atom.payload.get(1..4).unwrap_or(&[0, 0, 0]);
    let flags = u32::from_be_bytes([0, flags[0], flags[1], flags[2]]);
    Ok(full_box(&atom.kind, version, flags, &body))
}

fn pairs(entries: &[(u32, u32)]) -> Vec<u8> {
    let mut body = len32(entries.len()).to_be_bytes().to_vec();
    for (a, b) in entries {
        body.extend_from_slice(&a.to_be_bytes());
        body.extend_from_slice(&b.to_be_bytes());
    }
    body
}

fn u32_of(v: u64) -> Result<u32, Refused> {
    u32::try_from(v).map_err(|_| Refused(format!("{v} does not fit a 32-bit field")))
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&len32(payload.len() + 8).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    out
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(body.len() + 4);
    payload.push(version);
    payload.extend_from_slice(&flags.to_be_bytes()[1..]);
    payload.extend_from_slice(body);
    boxed(kind, &payload)
}

fn default_ftyp() -> Vec<u8> {
    boxed(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41")
}

/// A data reference saying the samples are in this file.
fn default_dinf() -> Vec<u8> {
    let url = full_box(b"url ", 0, 1, &[]);
    let mut dref = 1u32.to_be_bytes().to_vec();
    dref.extend_from_slice(&url);
    boxed(b"dinf", &full_box(b"dref", 0, 0, &dref))
}
