-- The prompt templates of the LLM passes in config/passes.json. A deployment may add versions
-- (a new version is a new pass version: bump prompt_version in the pass and backfill).

INSERT INTO prompt_templates (name, version, category, description, system_prompt, template, model_settings)
VALUES
(
  'DeepSentiment', 1, 'sentiment',
  'Deep sentiment analysis with emotion detection',
  'You analyse chat conversations. Answer with one JSON object and nothing else.',
  E'Analyse the sentiment and emotions of this {{chat_type}} conversation between {{participant_count}} participants ({{participants}}), {{message_count}} messages from {{started_at}} to {{ended_at}}.\n\nTranscript:\n{{transcript}}\n\nAnswer with a JSON object with these keys:\n- "overall": one of "positive", "negative", "neutral", "mixed"\n- "score": a number from -1 (very negative) to 1 (very positive)\n- "emotions": an object mapping emotion names (joy, anger, sadness, fear, surprise, trust) to intensities from 0 to 1\n- "per_participant": an object mapping each participant id to "positive", "negative", "neutral" or "mixed"\n- "summary": one sentence explaining the judgement',
  '{"temperature": 0, "max_tokens": 800, "response_format": "json_object", "required_keys": ["overall", "score", "emotions", "summary"], "max_transcript_chars": 60000}'::jsonb
),
(
  'ConversationSummary', 1, 'conversation_analysis',
  'Short summary, topics and open questions of a conversation',
  'You summarise chat conversations. Answer with one JSON object and nothing else.',
  E'Summarise this {{chat_type}} conversation ({{message_count}} messages, {{duration_minutes}} minutes, participants: {{participants}}).\n\nTranscript:\n{{transcript}}\n\nAnswer with a JSON object with these keys:\n- "summary": at most three sentences\n- "topics": an array of at most five short topic labels\n- "open_questions": an array of questions left unanswered (may be empty)',
  '{"temperature": 0.2, "max_tokens": 600, "response_format": "json_object", "required_keys": ["summary", "topics"], "max_transcript_chars": 60000}'::jsonb
),
(
  'MyPrompt', 1, 'conversation_analysis',
  'Template for a custom LLM pass: copy it under a new name, write its prompt, enable the pass',
  'You analyse chat conversations. Answer with one JSON object and nothing else.',
  E'Conversation {{conversation_id}} ({{message_count}} messages):\n{{transcript}}\n\nAnswer with a JSON object with the key "analysis" (a string).',
  '{"temperature": 0, "max_tokens": 400, "response_format": "json_object", "required_keys": ["analysis"]}'::jsonb
)
ON CONFLICT (name, version) DO NOTHING;
