//! Node.js test apps (owned by the Express end-to-end tests).
