//! Reading and writing organ models in the reference `.npz` layout (float64 arrays
//! `pca_mean`, `pca_components`, `gmm_weights`, `gmm_means`, `gmm_covariances`,
//! `log_weights`, `log_det`, and the PCA dimension as `dim`, or `D` in the published files).

use super::OrganModel;
use super::calibration::QualityScale;
use crate::checks::CleanStats;
use crate::error::{Error, ErrorKind, Result};
use ndarray::{Array, Array0, Dimension, Ix1, Ix2};
use ndarray_npy::{NpzReader, NpzWriter, ReadableElement};
use std::io::{Read, Seek, SeekFrom, Write};

/// Largest array entry read from an organ file, uncompressed. The shipped organs are under
/// 1 MiB; PCA over 4 layers x 192 at full rank is 4.5 MiB.
pub const MAX_ENTRY_BYTES: u64 = 16 << 20;
/// The smallest element an organ file's arrays hold (int32, for the dimension); float64 elsewhere.
const MIN_ELEMENT_BYTES: u64 = 4;
/// Largest `.npy` header read (numpy writes a few hundred bytes).
const MAX_HEADER_BYTES: usize = 64 << 10;

fn manifold_err(e: impl std::error::Error + 'static) -> Error {
    Error::from_source(ErrorKind::Manifold, &e)
}

/// The entry name as stored: numpy writes `key.npy`.
fn entry_name<R: Read + Seek>(npz: &mut NpzReader<R>, key: &str) -> Result<Option<String>> {
    let names = npz.names().map_err(manifold_err)?;
    let with_ext = format!("{key}.npy");
    Ok(names.into_iter().find(|n| *n == with_ext || n == key))
}

fn read_key<R: Read + Seek, D: Dimension>(npz: &mut NpzReader<R>, key: &str) -> Result<Array<f64, D>> {
    let Some(name) = entry_name(npz, key)? else {
        crate::bail!(Manifold, "missing key '{key}'");
    };
    npz.by_name::<ndarray::OwnedRepr<f64>, D>(&name).map_err(|e| {
        manifold_err(e).context(format!("key '{key}' (expected a float64 array of rank {})", D::NDIM.unwrap_or(0)))
    })
}

fn read_scalar_int<R: Read + Seek>(npz: &mut NpzReader<R>, name: &str) -> Option<i64> {
    fn get<R: Read + Seek, T: ReadableElement + Copy>(npz: &mut NpzReader<R>, name: &str) -> Option<T> {
        npz.by_name::<ndarray::OwnedRepr<T>, ndarray::Ix0>(name).ok().map(|a: Array0<T>| a.into_scalar())
    }
    get::<R, i64>(npz, name)
        .or_else(|| get::<R, i32>(npz, name).map(i64::from))
        .or_else(|| get::<R, f64>(npz, name).filter(|v| v.fract() == 0.0).map(|v| v as i64))
}

fn row_major<D: Dimension>(a: Array<f64, D>) -> Vec<f64> {
    // `iter` walks logical order, whatever the memory order (the published files are Fortran).
    a.iter().copied().collect()
}

/// Checks every entry of the archive before anything is allocated from its header: the entry is
/// at most [`MAX_ENTRY_BYTES`], its `.npy` header is well-formed and at most 64 KiB, and the array
/// it declares fits in the entry at 4 bytes an element, so no read allocates more than twice the
/// entry limit. ndarray-npy allocates the array its header declares before reading it, so a
/// hostile header (three billion elements in a file of a few bytes) must be refused here.
fn check_entries<R: Read + Seek>(reader: &mut R) -> Result<()> {
    let mut zip =
        zip::ZipArchive::new(&mut *reader).map_err(|e| manifold_err(e).context("not a readable .npz archive"))?;
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(manifold_err)?;
        let (name, size) = (entry.name().to_string(), entry.size());
        if size > MAX_ENTRY_BYTES {
            crate::bail!(Manifold, "entry '{name}' holds {size} bytes, more than the {MAX_ENTRY_BYTES} allowed");
        }
        let mut head = Vec::new();
        entry
            .take(12 + MAX_HEADER_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(|e| manifold_err(e).context(format!("entry '{name}'")))?;
        let bad = |why: &str| Error::new(ErrorKind::Manifold, format!("entry '{name}': {why}"));
        if head.len() < 10 || &head[..6] != b"\x93NUMPY" {
            return Err(bad("not a .npy array"));
        }
        // HEADER_LEN: u16 after version 1.0, u32 after 2.0 and 3.0 (the .npy format's spec).
        let (len_end, header_len) = match head[6] {
            1 => (10, u16::from_le_bytes([head[8], head[9]]) as usize),
            2 | 3 if head.len() >= 12 => (12, u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize),
            _ => return Err(bad("unknown .npy version")),
        };
        if header_len > MAX_HEADER_BYTES || len_end + header_len > head.len() {
            return Err(bad("the .npy header is longer than the entry or than 64 KiB"));
        }
        let header = ndarray_npy::npy::header::Header::from_reader(&mut &head[..len_end + header_len])
            .map_err(|e| manifold_err(e).context(format!("entry '{name}'")))?;
        let elements = header.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        if elements.is_none_or(|n| n.saturating_mul(MIN_ELEMENT_BYTES) > size) {
            return Err(bad(&format!(
                "its header declares shape {:?}, more elements than its {size} bytes hold",
                header.shape
            )));
        }
    }
    reader.seek(SeekFrom::Start(0)).map_err(|e| Error::from_source(ErrorKind::Io, &e))?;
    Ok(())
}

/// The clean statistics' keys ([`CleanStats`]), float64 scalars, beside the count of frames.
/// The echo level is read inside the image since the dead width replaced the side balance, so
/// its key is new too: a file of an older usq reads as one without statistics.
const CLEAN_KEYS: [&str; 5] = [
    "usq_clean_image_echo_level_p0_5",
    "usq_clean_clipped_share_p99_5",
    "usq_clean_dead_width_p99_5",
    "usq_clean_pixel_std_p0_5",
    "usq_clean_median_loglik_p0_5",
];
const CLEAN_FRAMES_KEY: &str = "usq_clean_frames";
/// A key only the statistics of usq before the dead width wrote: such a file reads as one
/// without statistics (its echo level was read over the whole frame), to be fitted again.
const OLDER_CLEAN_KEY: &str = "usq_clean_side_balance_p0_5";

fn clean_values(c: &CleanStats) -> [f64; 5] {
    [c.echo_level, c.clipped_share, c.dead_width, c.pixel_std, c.median_loglik]
}

/// The NRQs of the organ's held-out clean frames, ascending ([`QualityScale`]).
const QUALITY_KEY: &str = "usq_quality_nrq";

/// The calibrated index's scale when the file has it.
fn read_quality_scale<R: Read + Seek>(npz: &mut NpzReader<R>) -> Result<Option<QualityScale>> {
    if entry_name(npz, QUALITY_KEY)?.is_none() {
        return Ok(None);
    }
    let v = read_key::<_, Ix1>(npz, QUALITY_KEY)?;
    QualityScale::from_sorted(row_major(v)).map(Some)
}

/// The clean statistics when the file has them: all keys or none (or those of an older usq).
fn read_clean_stats<R: Read + Seek>(npz: &mut NpzReader<R>) -> Result<Option<CleanStats>> {
    if entry_name(npz, OLDER_CLEAN_KEY)?.is_some() {
        return Ok(None);
    }
    let mut present = 0;
    for key in CLEAN_KEYS.iter().chain([&CLEAN_FRAMES_KEY]) {
        present += entry_name(npz, key)?.is_some() as usize;
    }
    if present == 0 {
        return Ok(None);
    }
    if present != CLEAN_KEYS.len() + 1 {
        crate::bail!(Manifold, "the file has some of the usq_clean_* keys but not all {}", CLEAN_KEYS.len() + 1);
    }
    let mut v = [0f64; 5];
    for (slot, key) in v.iter_mut().zip(CLEAN_KEYS) {
        *slot = read_key::<_, ndarray::Ix0>(npz, key)?.into_scalar();
    }
    let name = entry_name(npz, CLEAN_FRAMES_KEY)?.expect("counted above");
    let frames = read_scalar_int(npz, &name)
        .filter(|&n| n > 0)
        .ok_or_else(|| Error::new(ErrorKind::Manifold, format!("'{CLEAN_FRAMES_KEY}' is not a positive integer")))?;
    Ok(Some(CleanStats {
        frames: frames as u64,
        echo_level: v[0],
        clipped_share: v[1],
        dead_width: v[2],
        pixel_std: v[3],
        median_loglik: v[4],
    }))
}

impl OrganModel {
    /// Reads an organ named `name` from a reference-layout `.npz` archive and validates it.
    /// Every entry is bounded before it is read (`check_entries`).
    pub fn from_npz<R: Read + Seek>(name: &str, mut reader: R) -> Result<OrganModel> {
        check_entries(&mut reader)?;
        let mut npz = NpzReader::new(reader).map_err(|e| manifold_err(e).context("not a readable .npz archive"))?;
        let pca_mean = read_key::<_, Ix1>(&mut npz, "pca_mean")?;
        let pca_components = read_key::<_, Ix2>(&mut npz, "pca_components")?;
        let gmm_weights = read_key::<_, Ix1>(&mut npz, "gmm_weights")?;
        let gmm_means = read_key::<_, Ix2>(&mut npz, "gmm_means")?;
        let gmm_covariances = read_key::<_, Ix2>(&mut npz, "gmm_covariances")?;
        let log_weights = read_key::<_, Ix1>(&mut npz, "log_weights")?;
        let log_det = read_key::<_, Ix1>(&mut npz, "log_det")?;
        let dim_entry = match entry_name(&mut npz, "dim")? {
            Some(n) => n,
            None => entry_name(&mut npz, "D")?
                .ok_or_else(|| Error::new(ErrorKind::Manifold, "missing key 'dim' (or 'D')"))?,
        };
        let dim = read_scalar_int(&mut npz, &dim_entry)
            .ok_or_else(|| Error::new(ErrorKind::Manifold, format!("'{dim_entry}' is not an integer scalar")))?;
        let (d, f) = pca_components.dim();
        if dim < 1 || dim as usize != d {
            crate::bail!(Manifold, "dimension {dim} does not match pca_components, which has {d} rows");
        }
        if gmm_means.dim().1 != d || gmm_covariances.dim().1 != d {
            crate::bail!(
                Manifold,
                "gmm_means {:?} / gmm_covariances {:?} do not have {d} columns",
                gmm_means.dim(),
                gmm_covariances.dim()
            );
        }
        let organ = OrganModel {
            name: name.to_string(),
            features: f,
            dim: d,
            components: gmm_weights.len(),
            pca_mean: row_major(pca_mean),
            pca_components: row_major(pca_components),
            gmm_weights: row_major(gmm_weights),
            gmm_means: row_major(gmm_means),
            gmm_covariances: row_major(gmm_covariances),
            log_weights: row_major(log_weights),
            log_det: row_major(log_det),
            clean: read_clean_stats(&mut npz)?,
            quality: read_quality_scale(&mut npz)?,
        };
        organ.validate()?;
        Ok(organ)
    }

    /// Writes the reference layout (uncompressed), with `dim` as an int64 scalar.
    pub fn to_npz<W: Write + Seek>(&self, writer: W) -> Result<()> {
        let (f, d, k) = (self.features, self.dim, self.components);
        let a1 = |v: &Vec<f64>| Array::from_vec(v.clone());
        let a2 = |v: &Vec<f64>, r: usize, c: usize| Array::from_shape_vec((r, c), v.clone()).expect("validated shape");
        let mut npz = NpzWriter::new(writer);
        let w = |e: ndarray_npy::WriteNpzError| manifold_err(e);
        npz.add_array("pca_mean", &a1(&self.pca_mean)).map_err(w)?;
        npz.add_array("pca_components", &a2(&self.pca_components, d, f)).map_err(w)?;
        npz.add_array("gmm_weights", &a1(&self.gmm_weights)).map_err(w)?;
        npz.add_array("gmm_means", &a2(&self.gmm_means, k, d)).map_err(w)?;
        npz.add_array("gmm_covariances", &a2(&self.gmm_covariances, k, d)).map_err(w)?;
        npz.add_array("log_weights", &a1(&self.log_weights)).map_err(w)?;
        npz.add_array("log_det", &a1(&self.log_det)).map_err(w)?;
        npz.add_array("dim", &ndarray::arr0(d as i64)).map_err(w)?;
        if let Some(c) = &self.clean {
            npz.add_array(CLEAN_FRAMES_KEY, &ndarray::arr0(c.frames as i64)).map_err(w)?;
            for (key, v) in CLEAN_KEYS.iter().zip(clean_values(c)) {
                npz.add_array(*key, &ndarray::arr0(v)).map_err(w)?;
            }
        }
        if let Some(q) = &self.quality {
            npz.add_array(QUALITY_KEY, &Array::from_vec(q.values().to_vec())).map_err(w)?;
        }
        npz.finish().map_err(w)?;
        Ok(())
    }
}
