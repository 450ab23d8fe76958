//! PatchCore (Roth et al., CVPR 2022): a coreset memory bank of training patches scored by
//! nearest-neighbour distance.

mod algorithm;
mod bank;
mod config;
mod coreset;
mod provenance;
mod search;
#[cfg(test)]
pub(crate) mod test_data;
#[cfg(test)]
mod tests;

pub(crate) use algorithm::BankDetector;
pub use algorithm::PatchCore;
pub(crate) use bank::MemoryBank;
pub(crate) use config::config_error;
pub use config::{BankSampling, PatchCoreConfig, PatchScore};
pub(crate) use coreset::{coreset_size, coreset_start, greedy_coreset, project};
pub use provenance::{BankProvenance, NearestTrainingPatch, PROVENANCE_FILE, PatchSource};
pub(crate) use provenance::{load as load_provenance, save as save_provenance};
