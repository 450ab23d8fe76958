//! The pages a person reads: `review.html` (the training set ranked by stage 1, with keep / drop
//! decisions exported as `decisions.csv`) and `report.html` (`llb predict`'s test images with
//! heat maps, verdicts and the nearest training patch). Both are single self-contained files,
//! with thumbnails beside them, and work offline.

mod data;
mod decisions;
mod maps;
mod page;
mod report;
mod thumbs;
mod training;

pub(crate) use data::ReviewInput;
pub(crate) use decisions::{
    DECISIONS_APPLIED, DecisionsApplied, Outcome, compare as compare_decisions,
    load as load_decisions,
};
pub(crate) use maps::ReviewMaps;
pub(crate) use page::url_path;
pub(crate) use report::{
    REPORT_PAGE, ReportRow, TRAINING_IMAGES, nearest_patches, write_report_page,
};
pub(crate) use training::write_review_page;
