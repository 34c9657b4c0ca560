//! Reading and writing organ models in the reference `.npz` layout (float64 arrays
//! `pca_mean`, `pca_components`, `gmm_weights`, `gmm_means`, `gmm_covariances`,
//! `log_weights`, `log_det`, and the PCA dimension as `dim`, or `D` in the published files).

use super::OrganModel;
use crate::error::{Error, ErrorKind, Result};
use ndarray::{Array, Array0, Dimension, Ix1, Ix2};
use ndarray_npy::{NpzReader, NpzWriter, ReadableElement};
use std::io::{Read, Seek, Write};

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

impl OrganModel {
    /// Reads an organ named `name` from a reference-layout `.npz` archive and validates it.
    pub fn from_npz<R: Read + Seek>(name: &str, reader: R) -> Result<OrganModel> {
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
        npz.finish().map_err(w)?;
        Ok(())
    }
}
