//! An ISO-BMFF (MP4) writer for one H.264 video track, `moov` before `mdat` so players can
//! start before the whole file has arrived.

/// One encoded frame in AVCC form (NAL units with 4-byte lengths).
pub(crate) struct Sample {
    pub data: Vec<u8>,
    pub sync: bool,
}

/// What the `avc1` sample entry and the headers need.
pub(crate) struct Track<'a> {
    pub width: u16,
    pub height: u16,
    /// Ticks per second of the media clock.
    pub timescale: u32,
    /// Ticks per frame.
    pub frame_ticks: u32,
    pub sps: &'a [u8],
    pub pps: &'a [u8],
}

fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    let size = u32::try_from(payload.len() + 8).unwrap_or(u32::MAX);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    out
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(payload.len() + 4);
    body.push(version);
    body.extend_from_slice(&flags.to_be_bytes()[1..]);
    body.extend_from_slice(payload);
    boxed(kind, &body)
}

struct Bytes(Vec<u8>);

impl Bytes {
    fn new() -> Self {
        Self(Vec::new())
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    fn matrix(&mut self) -> &mut Self {
        for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(v);
        }
        self
    }
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn len_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Writes the whole file.
pub(crate) fn write(track: &Track<'_>, samples: &[Sample]) -> Vec<u8> {
    let ftyp = boxed(
        b"ftyp",
        &Bytes::new()
            .raw(b"isom")
            .u32(0x200)
            .raw(b"isom")
            .raw(b"iso2")
            .raw(b"avc1")
            .raw(b"mp41")
            .0,
    );
    // The chunk offset depends on the size of moov, which does not depend on the offset's value.
    let probe = moov(track, samples, 0);
    let offset = ftyp.len() + probe.len() + 8;
    let moov = moov(track, samples, len_u32(offset));
    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut out = Vec::with_capacity(offset + payload);
    out.extend_from_slice(&ftyp);
    out.extend_from_slice(&moov);
    out.extend_from_slice(&len_u32(payload + 8).to_be_bytes());
    out.extend_from_slice(b"mdat");
    for s in samples {
        out.extend_from_slice(&s.data);
    }
    out
}

fn moov(track: &Track<'_>, samples: &[Sample], chunk_offset: u32) -> Vec<u8> {
    let count = len_u32(samples.len());
    let media_duration = count * track.frame_ticks;
    let movie_timescale = 1000;
    let movie_duration =
        u32::try_from(u64::from(media_duration) * 1000 / u64::from(track.timescale.max(1)))
            .unwrap_or(u32::MAX);

    let mvhd = full_box(
        b"mvhd",
        0,
        0,
        &Bytes::new()
            .u32(0)
            .u32(0)
            .u32(movie_timescale)
            .u32(movie_duration)
            .u32(0x0001_0000)
            .u16(0x0100)
            .zeros(10)
            .matrix()
            .zeros(24)
            .u32(2)
            .0,
    );
    let tkhd = full_box(
        b"tkhd",
        0,
        3,
        &Bytes::new()
            .u32(0)
            .u32(0)
            .u32(1)
            .u32(0)
            .u32(movie_duration)
            .zeros(8)
            .u16(0)
            .u16(0)
            .u16(0)
            .u16(0)
            .matrix()
            .u32(u32::from(track.width) << 16)
            .u32(u32::from(track.height) << 16)
            .0,
    );
    let mdhd = full_box(
        b"mdhd",
        0,
        0,
        &Bytes::new()
            .u32(0)
            .u32(0)
            .u32(track.timescale)
            .u32(media_duration)
            .u16(0x55C4) // "und"
            .u16(0)
            .0,
    );
    let hdlr = full_box(
        b"hdlr",
        0,
        0,
        &Bytes::new()
            .u32(0)
            .raw(b"vide")
            .zeros(12)
            .raw(b"VideoHandler\0")
            .0,
    );
    let vmhd = full_box(b"vmhd", 0, 1, &Bytes::new().zeros(8).0);
    let dref = full_box(
        b"dref",
        0,
        0,
        &Bytes::new().u32(1).raw(&full_box(b"url ", 0, 1, &[])).0,
    );
    let dinf = boxed(b"dinf", &dref);

    let avcc = boxed(
        b"avcC",
        &Bytes::new()
            .u8(1)
            .u8(track.sps.get(1).copied().unwrap_or(66))
            .u8(track.sps.get(2).copied().unwrap_or(0))
            .u8(track.sps.get(3).copied().unwrap_or(30))
            .u8(0xFF) // 4-byte NAL lengths
            .u8(0xE1) // one SPS
            .u16(len_u16(track.sps.len()))
            .raw(track.sps)
            .u8(1)
            .u16(len_u16(track.pps.len()))
            .raw(track.pps)
            .0,
    );
    let mut compressor = [0u8; 32];
    let name = b"drama-ai offline";
    compressor[0] = u8::try_from(name.len()).unwrap_or(0);
    compressor[1..=name.len()].copy_from_slice(name);
    let avc1 = boxed(
        b"avc1",
        &Bytes::new()
            .zeros(6)
            .u16(1) // data_reference_index
            .zeros(16)
            .u16(track.width)
            .u16(track.height)
            .u32(0x0048_0000)
            .u32(0x0048_0000)
            .u32(0)
            .u16(1) // frame_count
            .raw(&compressor)
            .u16(0x0018)
            .u16(0xFFFF)
            .raw(&avcc)
            .0,
    );
    let stsd = full_box(b"stsd", 0, 0, &Bytes::new().u32(1).raw(&avc1).0);
    let stts = full_box(
        b"stts",
        0,
        0,
        &Bytes::new().u32(1).u32(count).u32(track.frame_ticks).0,
    );
    let sync: Vec<u32> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.sync)
        .map(|(i, _)| len_u32(i + 1))
        .collect();
    let mut stss_body = Bytes::new();
    stss_body.u32(len_u32(sync.len()));
    for n in &sync {
        stss_body.u32(*n);
    }
    let stss = full_box(b"stss", 0, 0, &stss_body.0);
    let stsc = full_box(
        b"stsc",
        0,
        0,
        &Bytes::new().u32(1).u32(1).u32(count).u32(1).0,
    );
    let mut stsz_body = Bytes::new();
    stsz_body.u32(0).u32(count);
    for s in samples {
        stsz_body.u32(len_u32(s.data.len()));
    }
    let stsz = full_box(b"stsz", 0, 0, &stsz_body.0);
    let stco = full_box(b"stco", 0, 0, &Bytes::new().u32(1).u32(chunk_offset).0);
    let stbl = boxed(b"stbl", &[stsd, stts, stss, stsc, stsz, stco].concat());
    let minf = boxed(b"minf", &[vmhd, dinf, stbl].concat());
    let mdia = boxed(b"mdia", &[mdhd, hdlr, minf].concat());
    let trak = boxed(b"trak", &[tkhd, mdia].concat());
    boxed(b"moov", &[mvhd, trak].concat())
}
