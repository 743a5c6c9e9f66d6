-- The notes of one tenant. Runs with search_path set to the tenant's schema (schema model) or
-- to public in the tenant's own database (database model): no schema names here.
CREATE TABLE notes (
  id         bigserial PRIMARY KEY,
  body       text NOT NULL CHECK (length(body) <= 10000),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
