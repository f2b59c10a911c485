// Prompt templates, by name and version (the LLM analyzer's input).
import type { Pool } from 'pg';
import type { JsonObject } from '../analysis/types';

export interface PromptTemplate {
  name: string;
  version: number;
  category: string;
  description: string | null;
  system_prompt: string | null;
  template: string;
  model_settings: JsonObject;
}

export async function getPromptTemplate(pool: Pool, name: string, version: number): Promise<PromptTemplate | null> {
  const { rows } = await pool.query<PromptTemplate>(
    `SELECT name, version, category, description, system_prompt, template, model_settings
     FROM prompt_templates WHERE name = $1 AND version = $2`, [name, version]);
  return rows[0] ?? null;
}

/** Inserts or replaces a template (operators and tests; a changed prompt should get a new version). */
export async function upsertPromptTemplate(pool: Pool, t: Omit<PromptTemplate, 'description' | 'system_prompt' | 'model_settings'> & Partial<PromptTemplate>): Promise<void> {
  await pool.query(
    `INSERT INTO prompt_templates (name, version, category, description, system_prompt, template, model_settings)
     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
     ON CONFLICT (name, version) DO UPDATE SET category = EXCLUDED.category, description = EXCLUDED.description,
       system_prompt = EXCLUDED.system_prompt, template = EXCLUDED.template, model_settings = EXCLUDED.model_settings`,
    [t.name, t.version, t.category, t.description ?? null, t.system_prompt ?? null, t.template, JSON.stringify(t.model_settings ?? {})]);
}
