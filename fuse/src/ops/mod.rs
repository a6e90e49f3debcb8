pub mod attrs;
pub mod data;
pub mod dirs;
pub mod names;
pub mod special;
