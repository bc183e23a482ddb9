-- Transformed images written back to a store for every instance (images.shared_store): what is
-- there, how large, and when it was last used, so that the total stays under the size cap.
CREATE TABLE shared_variants (
    store TEXT NOT NULL,
    object_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    last_used INTEGER NOT NULL,
    PRIMARY KEY (store, object_key)
);
CREATE INDEX shared_variants_used ON shared_variants (store, last_used);
