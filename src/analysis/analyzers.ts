// The analyzer registry: one analyzer per kind a pass can name.
import type { Pool } from 'pg';
import type { Config } from '../config';
import type { AnalyzerRegistry } from './analyzer';
import { basicAnalyzer } from './basic';
import { keywordsAnalyzer } from './keywords';
import { languageAnalyzer } from './language';
import { createLlmAnalyzer, type LlmOptions } from './llm';
import { sentimentAnalyzer } from './sentiment';

/** LLM settings from the configuration: null when LLM_BASE_URL is not set. */
export function llmOptionsFromConfig(cfg: Pick<Config, 'llmBaseUrl' | 'llmApiKey' | 'llmModel'>, overrides: Partial<LlmOptions> = {}): LlmOptions | null {
  if (cfg.llmBaseUrl === null) return null;
  return { baseUrl: cfg.llmBaseUrl, apiKey: cfg.llmApiKey, model: cfg.llmModel, ...overrides };
}

export function createAnalyzers(deps: { pool: Pool; llm: LlmOptions | null }): AnalyzerRegistry {
  return {
    basic: basicAnalyzer,
    sentiment: sentimentAnalyzer,
    keywords: keywordsAnalyzer,
    language: languageAnalyzer,
    llm: createLlmAnalyzer({ pool: deps.pool, llm: deps.llm }),
  };
}
