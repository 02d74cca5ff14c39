//! A minimal H.264 (Constrained Baseline) writer for offline clips.
//!
//! Every macroblock is either raw samples (`I_PCM`) or skipped (`P_Skip`, copied from the
//! previous frame with a zero motion vector). The first frame is an IDR picture of PCM
//! macroblocks; each later frame is a P picture that re-sends only the macroblocks whose pixels
//! changed. Any H.264 decoder plays this: no transform, no entropy tables, no motion search.

/// Bits, most significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    current: u8,
    used: u8,
}

impl BitWriter {
    fn bit(&mut self, on: bool) {
        self.current = (self.current << 1) | u8::from(on);
        self.used += 1;
        if self.used == 8 {
            self.bytes.push(self.current);
            self.current = 0;
            self.used = 0;
        }
    }

    fn bits(&mut self, count: u32, value: u32) {
        for i in (0..count).rev() {
            self.bit((value >> i) & 1 == 1);
        }
    }

    /// Unsigned Exp-Golomb.
    fn ue(&mut self, value: u32) {
        let coded = u64::from(value) + 1;
        let len = 64 - coded.leading_zeros();
        for _ in 1..len {
            self.bit(false);
        }
        for i in (0..len).rev() {
            self.bit((coded >> i) & 1 == 1);
        }
    }

    /// Signed Exp-Golomb.
    fn se(&mut self, value: i32) {
        let mapped = if value > 0 {
            value.unsigned_abs() * 2 - 1
        } else {
            value.unsigned_abs() * 2
        };
        self.ue(mapped);
    }

    fn align_zero(&mut self) {
        while self.used != 0 {
            self.bit(false);
        }
    }

    /// Whole bytes; only called when aligned.
    fn raw(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }

    /// `rbsp_trailing_bits`.
    fn finish(mut self) -> Vec<u8> {
        self.bit(true);
        self.align_zero();
        self.bytes
    }
}

/// Wraps an RBSP into a NAL unit (header byte + emulation prevention), without a start code.
fn nal(ref_idc: u8, kind: u8, rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64 + 2);
    out.push((ref_idc << 5) | kind);
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

/// Planar 4:2:0 frame in limited-range BT.601.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Yuv {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl Yuv {
    /// Converts packed RGB (dimensions even).
    pub fn from_rgb(width: usize, height: usize, rgb: &[u8]) -> Self {
        let mut y = vec![0u8; width * height];
        let mut u = vec![0u8; width * height / 4];
        let mut v = vec![0u8; width * height / 4];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
            y[i] = sample(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16);
        }
        for cy in 0..height / 2 {
            for cx in 0..width / 2 {
                let (mut r, mut g, mut b) = (0i32, 0i32, 0i32);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let i = ((cy * 2 + dy) * width + cx * 2 + dx) * 3;
                    r += i32::from(rgb[i]);
                    g += i32::from(rgb[i + 1]);
                    b += i32::from(rgb[i + 2]);
                }
                let (r, g, b) = (r / 4, g / 4, b / 4);
                u[cy * width / 2 + cx] = sample(((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128);
                v[cy * width / 2 + cx] = sample(((112 * r - 94 * g - 18 * b + 128) >> 8) + 128);
            }
        }
        Self {
            width,
            height,
            y,
            u,
            v,
        }
    }

    /// The 384 PCM samples of macroblock (`mx`, `my`): 16×16 luma, 8×8 Cb, 8×8 Cr.
    fn macroblock(&self, mx: usize, my: usize, out: &mut Vec<u8>) {
        for row in 0..16 {
            let start = (my * 16 + row) * self.width + mx * 16;
            out.extend_from_slice(&self.y[start..start + 16]);
        }
        let cw = self.width / 2;
        for plane in [&self.u, &self.v] {
            for row in 0..8 {
                let start = (my * 8 + row) * cw + mx * 8;
                out.extend_from_slice(&plane[start..start + 8]);
            }
        }
    }

    fn same_macroblock(&self, other: &Self, mx: usize, my: usize) -> bool {
        let luma = (0..16).all(|row| {
            let start = (my * 16 + row) * self.width + mx * 16;
            self.y[start..start + 16] == other.y[start..start + 16]
        });
        let cw = self.width / 2;
        luma && (0..8).all(|row| {
            let start = (my * 8 + row) * cw + mx * 8;
            self.u[start..start + 8] == other.u[start..start + 8]
                && self.v[start..start + 8] == other.v[start..start + 8]
        })
    }

    /// Re-converts rows `y0..y1` (even bounds) from packed RGB of the same size.
    pub fn update_rows(&mut self, rgb: &[u8], y0: usize, y1: usize) {
        let w = self.width;
        let part = Self::from_rgb(w, y1 - y0, &rgb[y0 * w * 3..y1 * w * 3]);
        self.y[y0 * w..y1 * w].copy_from_slice(&part.y);
        self.u[y0 / 2 * w / 2..y1 / 2 * w / 2].copy_from_slice(&part.u);
        self.v[y0 / 2 * w / 2..y1 / 2 * w / 2].copy_from_slice(&part.v);
    }
}

/// Limited range, and never 0 (old decoders reject a PCM sample of 0).
fn sample(v: i32) -> u8 {
    u8::try_from(v.clamp(1, 255)).unwrap_or(255)
}

const LOG2_MAX_FRAME_NUM: u32 = 16;

/// Encodes frames of one size into NAL units.
pub(crate) struct Encoder {
    mbs_wide: usize,
    mbs_high: usize,
    previous: Option<Yuv>,
    frame_num: u32,
}

impl Encoder {
    /// For frames of `width`×`height` (multiples of 16).
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            mbs_wide: width / 16,
            mbs_high: height / 16,
            previous: None,
            frame_num: 0,
        }
    }

    /// Sequence parameter set NAL unit.
    pub fn sps(&self) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.bits(8, 66); // profile_idc: Baseline
        w.bits(8, 0b1100_0000); // constraint_set0 and 1: Constrained Baseline
        w.bits(8, 30); // level 3.0
        w.ue(0); // seq_parameter_set_id
        w.ue(LOG2_MAX_FRAME_NUM - 4);
        w.ue(2); // pic_order_cnt_type 2: output order = decoding order
        w.ue(1); // max_num_ref_frames
        w.bit(false); // gaps_in_frame_num_value_allowed_flag
        w.ue(u32::try_from(self.mbs_wide - 1).unwrap_or(0));
        w.ue(u32::try_from(self.mbs_high - 1).unwrap_or(0));
        w.bit(true); // frame_mbs_only_flag
        w.bit(true); // direct_8x8_inference_flag
        w.bit(false); // frame_cropping_flag
        w.bit(false); // vui_parameters_present_flag
        nal(3, 7, &w.finish())
    }

    /// Picture parameter set NAL unit.
    pub fn pps(&self) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.ue(0); // pic_parameter_set_id
        w.ue(0); // seq_parameter_set_id
        w.bit(false); // entropy_coding_mode_flag: CAVLC
        w.bit(false); // bottom_field_pic_order_in_frame_present_flag
        w.ue(0); // num_slice_groups_minus1
        w.ue(0); // num_ref_idx_l0_default_active_minus1
        w.ue(0); // num_ref_idx_l1_default_active_minus1
        w.bit(false); // weighted_pred_flag
        w.bits(2, 0); // weighted_bipred_idc
        w.se(0); // pic_init_qp_minus26
        w.se(0); // pic_init_qs_minus26
        w.se(0); // chroma_qp_index_offset
        w.bit(true); // deblocking_filter_control_present_flag
        w.bit(false); // constrained_intra_pred_flag
        w.bit(false); // redundant_pic_cnt_present_flag
        nal(3, 8, &w.finish())
    }

    /// Encodes the next frame; the first is an IDR picture, the rest P pictures.
    /// Returns the NAL unit and whether it is a sync sample.
    pub fn encode(&mut self, frame: &Yuv) -> (Vec<u8>, bool) {
        let mut w = BitWriter::default();
        let total = self.mbs_wide * self.mbs_high;
        let mut samples = Vec::with_capacity(384);
        match self.previous.take() {
            None => {
                self.frame_num = 0;
                w.ue(0); // first_mb_in_slice
                w.ue(7); // slice_type: I (all slices)
                w.ue(0); // pic_parameter_set_id
                w.bits(LOG2_MAX_FRAME_NUM, 0); // frame_num
                w.ue(0); // idr_pic_id
                w.bit(false); // no_output_of_prior_pics_flag
                w.bit(false); // long_term_reference_flag
                w.se(0); // slice_qp_delta
                w.ue(1); // disable_deblocking_filter_idc: off
                for my in 0..self.mbs_high {
                    for mx in 0..self.mbs_wide {
                        w.ue(25); // mb_type I_PCM
                        w.align_zero();
                        samples.clear();
                        frame.macroblock(mx, my, &mut samples);
                        w.raw(&samples);
                    }
                }
                self.previous = Some(frame.clone());
                (nal(3, 5, &w.finish()), true)
            }
            Some(previous) => {
                self.frame_num = (self.frame_num + 1) % (1 << LOG2_MAX_FRAME_NUM);
                w.ue(0); // first_mb_in_slice
                w.ue(5); // slice_type: P (all slices)
                w.ue(0); // pic_parameter_set_id
                w.bits(LOG2_MAX_FRAME_NUM, self.frame_num);
                w.bit(false); // num_ref_idx_active_override_flag
                w.bit(false); // ref_pic_list_modification_flag_l0
                w.bit(false); // adaptive_ref_pic_marking_mode_flag
                w.se(0); // slice_qp_delta
                w.ue(1); // disable_deblocking_filter_idc: off
                let mut skipped = 0u32;
                for address in 0..total {
                    let (mx, my) = (address % self.mbs_wide, address / self.mbs_wide);
                    if frame.same_macroblock(&previous, mx, my) {
                        skipped += 1;
                        continue;
                    }
                    w.ue(skipped); // mb_skip_run
                    skipped = 0;
                    w.ue(5 + 25); // mb_type I_PCM in a P slice
                    w.align_zero();
                    samples.clear();
                    frame.macroblock(mx, my, &mut samples);
                    w.raw(&samples);
                }
                if skipped > 0 {
                    w.ue(skipped);
                }
                self.previous = Some(frame.clone());
                (nal(2, 1, &w.finish()), false)
            }
        }
    }
}
