// Subscriptions: a pass that requires one runs only for conversations whose account_id has an
// active subscription (status active or trialing, and now within [valid_from, valid_until)).
import type { Pool } from 'pg';

export type SubscriptionStatus = 'active' | 'trialing' | 'past_due' | 'canceled' | 'expired';

export interface NewSubscription {
  account_id: string;
  plan: string;
  status: SubscriptionStatus;
  valid_from?: Date;
  valid_until?: Date | null;
}

/** The accounts among those given that have an active subscription now. */
export async function activeAccounts(pool: Pool, accountIds: readonly string[]): Promise<Set<string>> {
  if (accountIds.length === 0) return new Set();
  const { rows } = await pool.query<{ account_id: string }>(
    `SELECT DISTINCT account_id FROM subscriptions
     WHERE account_id = ANY($1::text[]) AND status IN ('active', 'trialing')
       AND valid_from <= now() AND (valid_until IS NULL OR valid_until > now())`, [accountIds]);
  return new Set(rows.map((r) => r.account_id));
}

export async function hasActiveSubscription(pool: Pool, accountId: string | null): Promise<boolean> {
  if (accountId === null) return false;
  return (await activeAccounts(pool, [accountId])).has(accountId);
}

export async function addSubscription(pool: Pool, s: NewSubscription): Promise<void> {
  await pool.query(
    `INSERT INTO subscriptions (account_id, plan, status, valid_from, valid_until) VALUES ($1, $2, $3, $4, $5)`,
    [s.account_id, s.plan, s.status, s.valid_from ?? new Date(Date.now() - 1000), s.valid_until ?? null]);
}
