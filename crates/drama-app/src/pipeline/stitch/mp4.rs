//! Reading MP4 (ISO-BMFF) files as far as joining them needs: each track's codec parameters,
//! clock and edit, its sample table (size, duration, composition offset, sync flag of every
//! sample) and the chunks that hold the samples' bytes. Anything this reader does not
//! understand is refused with the reason, never guessed.

/// Why a file cannot be read (or joined) here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

pub(super) fn refuse<T>(why: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(why.into()))
}

/// One box: its type, its payload and the whole box (header included).
#[derive(Clone, Copy)]
pub(super) struct Atom<'a> {
    pub(super) kind: [u8; 4],
    pub(super) payload: &'a [u8],
    pub(super) whole: &'a [u8],
}

impl<'a> Atom<'a> {
    /// Version and flags of a full box, and its body.
    pub(super) fn full(&self) -> Result<(u8, &'a [u8]), Refused> {
        if self.payload.len() < 4 {
            return refuse(format!("{} box is truncated", self.name()));
        }
        Ok((self.payload[0], &self.payload[4..]))
    }

    pub(super) fn name(&self) -> String {
        String::from_utf8_lossy(&self.kind).into_owned()
    }
}

/// The boxes laid one after another in `data`.
pub(super) fn atoms(data: &[u8]) -> Result<Vec<Atom<'_>>, Refused> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < 8 {
            return refuse("a box header is truncated");
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (header, size) = match size32 {
            0 => (8, rest.len()),
            1 => {
                let large = rest
                    .get(8..16)
                    .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
                let Some(large) = large else {
                    return refuse("a 64-bit box header is truncated");
                };
                (16, usize::try_from(large).unwrap_or(usize::MAX))
            }
            n => (8, n as usize),
        };
        if size < header || size > rest.len() {
            return refuse(format!(
                "box {} claims {size} bytes, {} remain",
                String::from_utf8_lossy(&kind),
                rest.len()
            ));
        }
        out.push(Atom {
            kind,
            payload: &rest[header..size],
            whole: &rest[..size],
        });
        at += size;
    }
    Ok(out)
}

fn child<'a>(parent: &[Atom<'a>], kind: &[u8; 4]) -> Option<Atom<'a>> {
    parent.iter().find(|a| &a.kind == kind).copied()
}

fn need<'a>(parent: &[Atom<'a>], kind: &[u8; 4], inside: &str) -> Result<Atom<'a>, Refused> {
    child(parent, kind).ok_or_else(|| {
        Refused(format!(
            "{inside} has no {} box",
            String::from_utf8_lossy(kind)
        ))
    })
}

/// Big-endian reads that refuse instead of panicking on short input.
pub(super) struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8], what: &'static str) -> Self {
        Self { data, at: 0, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refused> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len());
        let Some(end) = end else {
            return refuse(format!("{} box is truncated", self.what));
        };
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }
    pub(super) fn u16(&mut self) -> Result<u16, Refused> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(super) fn u32(&mut self) -> Result<u32, Refused> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, Refused> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub(super) fn skip(&mut self, n: usize) -> Result<(), Refused> {
        self.take(n).map(|_| ())
    }
    /// A count of entries of `width` bytes each, refused when the box cannot hold them (so a
    /// corrupt count never makes a huge allocation).
    fn count(&mut self, width: usize) -> Result<usize, Refused> {
        let n = self.u32()? as usize;
        if n.saturating_mul(width) > self.data.len().saturating_sub(self.at) {
            return refuse(format!(
                "{} box lists more entries than it holds",
                self.what
            ));
        }
        Ok(n)
    }
}

/// One sample of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sample {
    pub(super) size: u32,
    pub(super) delta: u32,
    pub(super) composition: i32,
    pub(super) sync: bool,
}

/// A run of consecutive samples stored together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Chunk {
    /// Where its bytes start in the file.
    pub(super) offset: u64,
    /// How many samples it holds (the next ones of its track).
    pub(super) samples: usize,
    /// How many bytes.
    pub(super) len: u64,
}

/// One track of a file.
pub(super) struct Track<'a> {
    /// `vide`, `soun`, …
    pub(super) handler: [u8; 4],
    pub(super) timescale: u32,
    /// The boxes copied as they are into a joined file.
    pub(super) tkhd: Atom<'a>,
    pub(super) mdhd: Atom<'a>,
    pub(super) hdlr: Atom<'a>,
    pub(super) media_header: Option<Atom<'a>>,
    pub(super) dinf: Option<Atom<'a>>,
    /// The sample descriptions: the codec and its parameters.
    pub(super) stsd: Atom<'a>,
    /// The media time where presentation starts (a single edit), 0 without an edit list.
    pub(super) edit_start: i64,
    pub(super) has_edit: bool,
    pub(super) has_sync_table: bool,
    pub(super) has_composition: bool,
    pub(super) samples: Vec<Sample>,
    pub(super) chunks: Vec<Chunk>,
}

impl Track<'_> {
    /// The sum of the sample durations, in the track's clock.
    pub(super) fn media_duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.delta)).sum()
    }
}

/// A whole file.
pub(super) struct Movie<'a> {
    pub(super) ftyp: Option<Atom<'a>>,
    pub(super) mvhd: Atom<'a>,
    pub(super) timescale: u32,
    pub(super) tracks: Vec<Track<'a>>,
}

/// Reads a file.
pub(super) fn read(data: &[u8]) -> Result<Movie<'_>, Refused> {
    let top = atoms(data)?;
    if child(&top, b"moof").is_some() {
        return refuse("fragmented MP4 (moof boxes) is not joined here");
    }
    let moov = atoms(need(&top, b"moov", "the file")?.payload)?;
    let mvhd = need(&moov, b"mvhd", "moov")?;
    let (version, body) = mvhd.full()?;
    let mut r = Reader::new(body, "mvhd");
    r.skip(if version == 1 { 16 } else { 8 })?;
    let timescale = r.u32()?;
    let mut tracks = Vec::new();
    for trak in moov.iter().filter(|a| &a.kind == b"trak") {
        tracks.push(read_track(data, &atoms(trak.payload)?)?);
    }
    if tracks.is_empty() {
        return refuse("the file has no track");
    }
    Ok(Movie {
        ftyp: child(&top, b"ftyp"),
        mvhd,
        timescale: timescale.max(1),
        tracks,
    })
}

fn read_track<'a>(file: &[u8], trak: &[Atom<'a>]) -> Result<Track<'a>, Refused> {
    let tkhd = need(trak, b"tkhd", "trak")?;
    let mdia = atoms(need(trak, b"mdia", "trak")?.payload)?;
    let mdhd = need(&mdia, b"mdhd", "mdia")?;
    let (version, body) = mdhd.full()?;
    let mut r = Reader::new(body, "mdhd");
    r.skip(if version == 1 { 16 } else { 8 })?;
    let timescale = r.u32()?.max(1);
    let hdlr = need(&mdia, b"hdlr", "mdia")?;
    let (_, body) = hdlr.full()?;
    let mut r = Reader::new(body, "hdlr");
    r.skip(4)?;
    let handler = r.u32()?.to_be_bytes();
    let minf = atoms(need(&mdia, b"minf", "mdia")?.payload)?;
    let media_header = minf
        .iter()
        .find(|a| matches!(&a.kind, b"vmhd" | b"smhd" | b"nmhd" | b"sthd"))
        .copied();
    let stbl = atoms(need(&minf, b"stbl", "minf")?.payload)?;
    let stsd = need(&stbl, b"stsd", "stbl")?;
    let (_, body) = stsd.full()?;
    if Reader::new(body, "stsd").u32()? != 1 {
        return refuse("a track with several sample descriptions is not joined here");
    }
    let (edit_start, has_edit) = match child(trak, b"edts") {
        Some(edts) => (edit(&atoms(edts.payload)?)?, true),
        None => (0, false),
    };
    let (samples, chunks) = sample_table(file, &stbl)?;
    Ok(Track {
        handler,
        timescale,
        tkhd,
        mdhd,
        hdlr,
        media_header,
        dinf: child(&minf, b"dinf"),
        stsd,
        edit_start,
        has_edit,
        has_sync_table: child(&stbl, b"stss").is_some(),
        has_composition: child(&stbl, b"ctts").is_some(),
        samples,
        chunks,
    })
}

/// The start of the one edit a track may have (the usual shift past B-frame reordering or
/// AAC priming); anything else (several edits, empty edits, another rate) is refused.
fn edit(edts: &[Atom<'_>]) -> Result<i64, Refused> {
    let Some(elst) = child(edts, b"elst") else {
        return Ok(0);
    };
    let (version, body) = elst.full()?;
    let mut r = Reader::new(body, "elst");
    let width = if version == 1 { 20 } else { 12 };
    if r.count(width)? != 1 {
        return refuse("an edit list of more than one edit is not joined here");
    }
    let media_time = if version == 1 {
        r.skip(8)?;
        r.u64()?.cast_signed()
    } else {
        r.skip(4)?;
        i64::from(r.u32()?.cast_signed())
    };
    let (rate, fraction) = (r.u16()?, r.u16()?);
    if media_time < 0 || rate != 1 || fraction != 0 {
        return refuse("an empty edit or an edit at another rate is not joined here");
    }
    Ok(media_time)
}

fn sample_table(file: &[u8], stbl: &[Atom<'_>]) -> Result<(Vec<Sample>, Vec<Chunk>), Refused> {
    if child(stbl, b"stz2").is_some() {
        return refuse("compact sample sizes (stz2) are not joined here");
    }
    let (_, body) = need(stbl, b"stsz", "stbl")?.full()?;
    let mut r = Reader::new(body, "stsz");
    let uniform = r.u32()?;
    let sizes: Vec<u32> = if uniform == 0 {
        let n = r.count(4)?;
        (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?
    } else {
        let n = r.u32()? as usize;
        if n > 1 << 26 {
            return refuse("stsz lists an implausible number of samples");
        }
        vec![uniform; n]
    };
    let n = sizes.len();
    let deltas = expand(need(stbl, b"stts", "stbl")?, "stts", n, |r, _| r.u32())?;
    let composition = match child(stbl, b"ctts") {
        Some(ctts) => expand(ctts, "ctts", n, |r, version| {
            let raw = r.u32()?;
            // Version 0 declares the offsets unsigned; writers that need negative ones use
            // version 1, so a value past i32::MAX is nonsense either way.
            let signed = raw.cast_signed();
            if version == 0 && signed < 0 {
                return refuse("ctts holds an offset beyond 2^31");
            }
            Ok(signed)
        })?,
        None => vec![0; n],
    };
    let sync: Option<Vec<usize>> = match child(stbl, b"stss") {
        Some(stss) => {
            let (_, body) = stss.full()?;
            let mut r = Reader::new(body, "stss");
            let count = r.count(4)?;
            Some(
                (0..count)
                    .map(|_| r.u32().map(|s| s as usize))
                    .collect::<Result<_, _>>()?,
            )
        }
        None => None,
    };
    let mut samples: Vec<Sample> = (0..n)
        .map(|i| Sample {
            size: sizes[i],
            delta: deltas[i],
            composition: composition[i],
            sync: sync.is_none(),
        })
        .collect();
    for number in sync.iter().flatten() {
        match number.checked_sub(1).and_then(|i| samples.get_mut(i)) {
            Some(s) => s.sync = true,
            None => return refuse("stss names a sample that does not exist"),
        }
    }
    let chunks = chunks(file, stbl, &samples)?;
    Ok((samples, chunks))
}

/// A run-length table (`stts`, `ctts`) expanded to one value per sample.
fn expand<T: Copy>(
    atom: Atom<'_>,
    what: &'static str,
    samples: usize,
    mut value: impl FnMut(&mut Reader<'_>, u8) -> Result<T, Refused>,
) -> Result<Vec<T>, Refused> {
    let (version, body) = atom.full()?;
    let mut r = Reader::new(body, what);
    let entries = r.count(8)?;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..entries {
        let count = r.u32()? as usize;
        let v = value(&mut r, version)?;
        if out.len() + count > samples {
            return refuse(format!("{what} covers more samples than the track has"));
        }
        out.extend(std::iter::repeat_n(v, count));
    }
    if out.len() != samples {
        return refuse(format!(
            "{what} covers {} samples, the track has {samples}",
            out.len()
        ));
    }
    Ok(out)
}

fn chunks(file: &[u8], stbl: &[Atom<'_>], samples: &[Sample]) -> Result<Vec<Chunk>, Refused> {
    let offsets: Vec<u64> = if let Some(stco) = child(stbl, b"stco") {
        let (_, body) = stco.full()?;
        let mut r = Reader::new(body, "stco");
        let n = r.count(4)?;
        (0..n)
            .map(|_| r.u32().map(u64::from))
            .collect::<Result<_, _>>()?
    } else {
        let (_, body) = need(stbl, b"co64", "stbl")?.full()?;
        let mut r = Reader::new(body, "co64");
        let n = r.count(8)?;
        (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?
    };
    let (_, body) = need(stbl, b"stsc", "stbl")?.full()?;
    let mut r = Reader::new(body, "stsc");
    let entries = r.count(12)?;
    let mut runs = Vec::with_capacity(entries);
    for _ in 0..entries {
        let (first, per_chunk, description) = (r.u32()?, r.u32()?, r.u32()?);
        if description != 1 {
            return refuse("samples of another sample description are not joined here");
        }
        runs.push((first as usize, per_chunk as usize));
    }
    let mut out = Vec::with_capacity(offsets.len());
    let mut next = 0usize;
    for (index, offset) in offsets.iter().enumerate() {
        let number = index + 1;
        let per_chunk = runs
            .iter()
            .rev()
            .find(|(first, _)| *first <= number)
            .map_or(0, |(_, n)| *n);
        let end = next + per_chunk;
        let Some(held) = samples.get(next..end) else {
            return refuse("stsc puts more samples in chunks than the track has");
        };
        let len: u64 = held.iter().map(|s| u64::from(s.size)).sum();
        let inside = offset
            .checked_add(len)
            .is_some_and(|e| e <= file.len() as u64);
        if !inside {
            return refuse("a chunk lies beyond the end of the file");
        }
        out.push(Chunk {
            offset: *offset,
            samples: per_chunk,
            len,
        });
        next = end;
    }
    if next != samples.len() {
        return refuse(format!(
            "the chunks hold {next} samples, the track has {}",
            samples.len()
        ));
    }
    Ok(out)
}

/// What [`probe`] reads of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The movie's duration (the longest track, after its edit), in seconds.
    pub duration: f64,
    /// Per track: its handler (`vide`, `soun`), sample count and media duration in seconds.
    pub tracks: Vec<ProbeTrack>,
}

/// One track of a [`Probe`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTrack {
    /// `vide`, `soun`, …
    pub handler: String,
    /// How many samples (frames, audio packets).
    pub samples: usize,
    /// Sum of the sample durations, in seconds.
    pub duration: f64,
    /// How many samples are sync samples (key frames).
    pub sync_samples: usize,
}

/// Reads an MP4's tracks and durations from its sample tables (not from the header fields a
/// writer may have got wrong), checking that every sample lies inside the file.
///
/// # Errors
/// [`Refused`] saying what cannot be read.
pub fn probe(data: &[u8]) -> Result<Probe, Refused> {
    let movie = read(data)?;
    let tracks: Vec<ProbeTrack> = movie
        .tracks
        .iter()
        .map(|t| ProbeTrack {
            handler: String::from_utf8_lossy(&t.handler).into_owned(),
            samples: t.samples.len(),
            duration: seconds(t.media_duration(), t.timescale),
            sync_samples: t.samples.iter().filter(|s| s.sync).count(),
        })
        .collect();
    let duration = tracks.iter().map(|t| t.duration).fold(0.0, f64::max);
    Ok(Probe { duration, tracks })
}

#[expect(clippy::cast_precision_loss, reason = "durations far below 2^52 ticks")]
fn seconds(ticks: u64, timescale: u32) -> f64 {
    ticks as f64 / f64::from(timescale.max(1))
}
