//! Statistics for comparing refusal rates: intervals, paired tests and multiple-comparison correction.
