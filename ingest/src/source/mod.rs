//! Where records come from. Each source yields raw records with a source position that
//! bronze records in the same Delta commit as the data.

pub mod landing;
