//! Typed tensors passed between the API and scoring engines: a datatype, a shape and a
//! flat row-major buffer of that type; and [`BatchObserver`], what sees each executed
//! batch's tensors on the batcher's thread. The daemon's drift monitoring implements the
//! observer; the batcher calls it without knowing what it is.

use coffer_models::Datatype;

/// The elements of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl TensorData {
    pub fn datatype(&self) -> Datatype {
        match self {
            TensorData::F32(_) => Datatype::Fp32,
            TensorData::F64(_) => Datatype::Fp64,
            TensorData::I32(_) => Datatype::Int32,
            TensorData::I64(_) => Datatype::Int64,
            TensorData::Bool(_) => Datatype::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer of the given type with room for `capacity` elements.
    pub fn with_capacity(datatype: Datatype, capacity: usize) -> TensorData {
        match datatype {
            Datatype::Fp32 => TensorData::F32(Vec::with_capacity(capacity)),
            Datatype::Fp64 => TensorData::F64(Vec::with_capacity(capacity)),
            Datatype::Int32 => TensorData::I32(Vec::with_capacity(capacity)),
            Datatype::Int64 => TensorData::I64(Vec::with_capacity(capacity)),
            Datatype::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `other` (same type) to `self`; false if the types differ.
    pub fn extend_from(&mut self, other: &TensorData) -> bool {
        match (self, other) {
            (TensorData::F32(a), TensorData::F32(b)) => a.extend_from_slice(b),
            (TensorData::F64(a), TensorData::F64(b)) => a.extend_from_slice(b),
            (TensorData::I32(a), TensorData::I32(b)) => a.extend_from_slice(b),
            (TensorData::I64(a), TensorData::I64(b)) => a.extend_from_slice(b),
            (TensorData::Bool(a), TensorData::Bool(b)) => a.extend_from_slice(b),
            _ => return false,
        }
        true
    }

    /// Elements `start..end`, as a new buffer.
    pub fn slice(&self, start: usize, end: usize) -> TensorData {
        match self {
            TensorData::F32(v) => TensorData::F32(v[start..end].to_vec()),
            TensorData::F64(v) => TensorData::F64(v[start..end].to_vec()),
            TensorData::I32(v) => TensorData::I32(v[start..end].to_vec()),
            TensorData::I64(v) => TensorData::I64(v[start..end].to_vec()),
            TensorData::Bool(v) => TensorData::Bool(v[start..end].to_vec()),
        }
    }

    /// Element `i` as f64 (booleans as 0/1).
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self {
            TensorData::F32(v) => v.get(i).map(|&x| f64::from(x)),
            TensorData::F64(v) => v.get(i).copied(),
            TensorData::I32(v) => v.get(i).map(|&x| f64::from(x)),
            TensorData::I64(v) => v.get(i).map(|&x| x as f64),
            TensorData::Bool(v) => v.get(i).map(|&x| f64::from(u8::from(x))),
        }
    }

    /// The elements as f64 (for metrics and evaluation; booleans as 0/1).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
        }
    }
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Rows along the first (batch) axis.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Elements per row.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Rows `start..end` as a new tensor.
    pub fn rows_slice(&self, start: usize, end: usize) -> Tensor {
        let w = self.row_len();
        let mut shape = self.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = end - start;
        }
        Tensor {
            name: self.name.clone(),
            shape,
            data: self.data.slice(start * w, end * w),
        }
    }
}

/// Sees every executed batch on the model's thread (drift monitoring): the inputs of
/// each request before the run, the batch's outputs after it, before delivery. Must be
/// quick: it runs on the batch's path.
pub trait BatchObserver: Send + Sync + std::fmt::Debug {
    fn inputs(&self, inputs: &[Tensor]);
    fn outputs(&self, outputs: &[Tensor]);
}
