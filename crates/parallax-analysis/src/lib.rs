//! What parallax makes of answers: the built-in refusal classifier and the judge's rubric
//! (`classify`), statistics for comparing rates (`stats`), and the report model built from
//! stored results (`report`).
//!
//! Pure, like the core it depends on: no network, database or async work, and no I/O.

pub mod classify;
pub mod probe;
pub mod report;
pub mod stats;
