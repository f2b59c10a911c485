-- Analysis pass tracking: one row per (conversation, pass, pass version), and the result cache
-- keyed by content, so the same pass version never recomputes the same conversation content.

CREATE TABLE analysis_runs (
  id              bigserial PRIMARY KEY,
  conversation_id text        NOT NULL REFERENCES conversations (conversation_id) ON DELETE CASCADE,
  pass_name       text        NOT NULL,
  pass_version    integer     NOT NULL CHECK (pass_version >= 1),
  status          text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped')),
  attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  -- The last attempt's error (failed), or why the pass was not run (skipped).
  error           text,
  result          jsonb,
  -- true when the result came from analysis_cache rather than from running the analyzer.
  cached          boolean     NOT NULL DEFAULT false,
  -- Which processor instance holds a running row, and when it last said it is still at it.
  worker          text,
  heartbeat_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  started_at      timestamptz,
  finished_at     timestamptz,
  duration_ms     integer,
  -- When the analysis.completed event of this outcome was acknowledged by Kafka; NULL: still owed.
  emitted_at      timestamptz,
  UNIQUE (conversation_id, pass_name, pass_version)
);

CREATE INDEX analysis_runs_pass_status_idx ON analysis_runs (pass_name, pass_version, status);

CREATE TABLE analysis_cache (
  pass_name              text        NOT NULL,
  pass_version           integer     NOT NULL,
  content_hash           text        NOT NULL,
  result                 jsonb       NOT NULL,
  source_conversation_id text,
  hits                   bigint      NOT NULL DEFAULT 0,
  created_at             timestamptz NOT NULL DEFAULT now(),
  last_hit_at            timestamptz,
  PRIMARY KEY (pass_name, pass_version, content_hash)
);
