-- Sealed conversations and their messages, as loaded by the ETL from conversation.sealed.
-- Loading is idempotent: conversation_id and message_id are keys, inserts skip what exists.

CREATE TABLE conversations (
  conversation_id           text PRIMARY KEY,
  chat_id                   text        NOT NULL,
  chat_type                 text,
  account_id                text,
  started_at                timestamptz NOT NULL,
  ended_at                  timestamptz NOT NULL,
  message_count             integer     NOT NULL CHECK (message_count >= 0),
  participant_ids           text[]      NOT NULL DEFAULT '{}',
  first_message_id          text,
  last_message_id           text,
  seal_reason               text        NOT NULL
                            CHECK (seal_reason IN ('NEXT_MESSAGE', 'GAP_TIMEOUT', 'FORCED', 'MAX_SIZE')),
  continues_conversation_id text,
  gap_ms                    bigint      NOT NULL CHECK (gap_ms >= 0),
  sealed_at                 timestamptz NOT NULL,
  -- sha256 over the content the analyzers read (senders, times, texts); keys analysis_cache.
  content_hash              text        NOT NULL,
  loaded_at                 timestamptz NOT NULL DEFAULT now(),
  CHECK (ended_at >= started_at)
);

CREATE INDEX conversations_chat_started_idx ON conversations (chat_id, started_at);
CREATE INDEX conversations_account_idx ON conversations (account_id) WHERE account_id IS NOT NULL;
CREATE INDEX conversations_content_hash_idx ON conversations (content_hash);
CREATE INDEX conversations_continues_idx ON conversations (continues_conversation_id)
  WHERE continues_conversation_id IS NOT NULL;

CREATE TABLE messages (
  message_id          text PRIMARY KEY,
  conversation_id     text        NOT NULL REFERENCES conversations (conversation_id) ON DELETE CASCADE,
  -- 0-based place in the conversation (sent_at order, ties in arrival order).
  position            integer     NOT NULL CHECK (position >= 0),
  chat_id             text        NOT NULL,
  sender_id           text        NOT NULL,
  sent_at             timestamptz NOT NULL,
  text                text,
  is_from_me          boolean     NOT NULL DEFAULT false,
  reply_to_message_id text,
  account_id          text
);

CREATE INDEX messages_conversation_idx ON messages (conversation_id, position);
CREATE INDEX messages_chat_sent_idx ON messages (chat_id, sent_at);
