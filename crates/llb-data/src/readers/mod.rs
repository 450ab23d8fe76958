//! Readers that turn folders on disk into [`Dataset`](crate::Dataset)s with stable sample ids.

mod elpv;
mod fashion_mnist;
mod folder;
mod mvtec;
mod realiad;
mod visa;

#[cfg(test)]
pub(crate) mod tests;

pub use elpv::{ElpvCell, ElpvCellType, ElpvConfig, ElpvMild, read_elpv, read_elpv_labels};
pub use fashion_mnist::{FASHION_MNIST_CLASSES, FashionMnistConfig, read_fashion_mnist};
#[cfg(test)]
pub(crate) use fashion_mnist::{MAX_IDX_BYTES, parse_idx};
pub use folder::read_image_folder;
pub use mvtec::read_mvtec;
pub use realiad::{RealIadSplit, read_realiad, read_realiad_json, realiad_group};
pub use visa::read_visa;
