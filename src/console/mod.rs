//! The admin console's rendering: page layout, the pages, SVG charts and the metrics history
//! the overview draws. The HTTP side (who may see it, forms, CSRF) is `handlers::console`.

pub mod charts;
pub mod history;
pub mod html;
pub mod pages;

/// The console's stylesheet (the only thing its pages load).
pub const STYLESHEET: &str = include_str!("console.css");
/// The import example served at `import-example.csv`.
pub const IMPORT_EXAMPLE: &str = include_str!("import-example.csv");
