-- Prompt templates (the LLM analyzer renders them, by name and version) and subscriptions
-- (passes that require one run only for conversations whose account has an active one).

CREATE TABLE prompt_templates (
  id             bigserial PRIMARY KEY,
  name           text        NOT NULL,
  version        integer     NOT NULL CHECK (version >= 1),
  category       text        NOT NULL,
  description    text,
  -- Optional system message; the template is the user message. Placeholders: {{name}}.
  system_prompt  text,
  template       text        NOT NULL,
  -- model, temperature, max_tokens, response_format ('json_object'), required_keys (string[]),
  -- max_transcript_chars: all optional.
  model_settings jsonb       NOT NULL DEFAULT '{}'::jsonb,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (name, version)
);

CREATE TABLE subscriptions (
  id          bigserial PRIMARY KEY,
  account_id  text        NOT NULL,
  plan        text        NOT NULL,
  status      text        NOT NULL
              CHECK (status IN ('active', 'trialing', 'past_due', 'canceled', 'expired')),
  valid_from  timestamptz NOT NULL DEFAULT now(),
  -- NULL: open-ended.
  valid_until timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CHECK (valid_until IS NULL OR valid_until > valid_from)
);

CREATE INDEX subscriptions_account_idx ON subscriptions (account_id, status);
