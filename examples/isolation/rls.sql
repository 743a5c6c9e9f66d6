-- Row-level security on shared tables (run by rls.sh, idempotent, as the hook's PGUSER).
-- Every row carries tenant_id; the policy shows and accepts only rows of the tenant named by
-- the transaction's app.current_tenant, which the backend sets with set_tenant_context() at the
-- start of each request's transaction. Without it (or for a tenant not active in `tenants`)
-- a query sees no rows and can write none.
SELECT pg_advisory_xact_lock(hashtext('tenant-gateway rls setup')) AS locked \gset

CREATE TABLE IF NOT EXISTS tenants (
  tenant_id  text PRIMARY KEY,
  active     boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);

CREATE TABLE IF NOT EXISTS notes (
  tenant_id  text NOT NULL DEFAULT current_setting('app.current_tenant', true)
             REFERENCES tenants (tenant_id),
  id         bigserial PRIMARY KEY,
  body       text NOT NULL CHECK (length(body) <= 10000),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS notes_tenant_id ON notes (tenant_id, id);

-- The tenant of the current transaction (SET LOCAL semantics: gone at COMMIT or ROLLBACK).
CREATE OR REPLACE FUNCTION set_tenant_context(tenant text) RETURNS void
LANGUAGE sql VOLATILE AS $$
  SELECT set_config('app.current_tenant', tenant, true);
$$;

-- Whether a tenant may see its rows (deleted tenants keep their rows but see none).
CREATE OR REPLACE FUNCTION tenant_is_active(tenant text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT coalesce((SELECT active FROM tenants WHERE tenant_id = tenant), false);
$$;

ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
-- The owner too: nobody reads across tenants by accident.
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON notes;
CREATE POLICY tenant_isolation ON notes
  USING (tenant_id = current_setting('app.current_tenant', true)
         AND tenant_is_active(tenant_id))
  WITH CHECK (tenant_id = current_setting('app.current_tenant', true)
              AND tenant_is_active(tenant_id));

REVOKE ALL ON tenants FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO :"app";
GRANT USAGE, SELECT ON SEQUENCE notes_id_seq TO :"app";
GRANT EXECUTE ON FUNCTION set_tenant_context(text) TO :"app";
