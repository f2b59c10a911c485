-- Thread mode (CONVERSATION_MODE_BY_TYPE): the message each message of a thread was linked to,
-- by its reply_to_message_id or by the thread model; null when it started its thread, and for
-- every message of a chat in gap mode.
ALTER TABLE messages ADD COLUMN linked_message_id text;
