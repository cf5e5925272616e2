using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>
/// Retention, a page of accounts (billing customers) at a time — only accounts with a Stripe customer have
/// reports, so only theirs can be acknowledged — in statements of at most the batch size, each in its own
/// transaction (autocommit: a statement is atomic), so writers wait for one batch at most and a stop loses nothing.
/// </summary>
/// <remarks>
/// Why each condition (the readers of <c>usage_events</c> that must not notice):
/// <list type="bullet">
/// <item>acknowledged: the report <c>sent</c> (<c>sent_at</c>), no pending correction, both before the cutoff
/// (≥ 35 days ago): Stripe can no longer be asked to cancel (24 h) or compensate (34 days) it, the flusher
/// never looks at it again, and <c>reconcile</c> reads <c>usage_reports</c>, which stay.</item>
/// <item>the report's period ended by the cutoff: the recorder's period-total seed sums the events of a period it
/// records into, and it records only within 35 days, so those periods keep all their events.</item>
/// <item>not in the partial hour at either edge of its report's period: a period starting at 10:17 is read as
/// whole days (daily rollup), the whole hours of its edge days (hourly rollup) and 10:17–11:00 from the events.
/// The period's neighbour shares the edge, so the other side of the hour is kept by its own report.</item>
/// <item>hourly rows go only for days before the cutoff's day with no event left (a void, which changes the
/// rollups, needs its event) and no edge of any of the account's reported periods inside them: only such
/// days' hours are ever read.</item>
/// </list>
/// </remarks>
internal sealed class EfUsageRetentionStore<TContext>(IDbContextFactory<TContext> contexts, bool postgres) : IUsageRetentionStore
    where TContext : DbContext
{
    private const int AccountsPerPage = 200;

    private const string PostgresEventsSql = """
        DELETE FROM usage_events WHERE id IN (
            SELECT e.id FROM usage_events e
            JOIN usage_reports r ON r.id = e.report_id
            WHERE e.user_id IN ({users}) AND e.occurred_at < @cutoff AND r.sent_at < @cutoff
              AND r.status = 'sent' AND r.period_end <= @cutoff
              AND (r.period_start = date_trunc('hour', r.period_start, 'UTC') OR e.occurred_at >= date_trunc('hour', r.period_start, 'UTC') + interval '1 hour')
              AND (r.period_end = date_trunc('hour', r.period_end, 'UTC') OR e.occurred_at < date_trunc('hour', r.period_end, 'UTC'))
              AND NOT EXISTS (SELECT 1 FROM usage_corrections c WHERE c.report_id = r.id AND c.status = 'pending')
            LIMIT @batch)
        """;

    private const string PostgresHourlySql = """
        DELETE FROM usage_hourly WHERE ctid = ANY(ARRAY(
            SELECT h.ctid FROM usage_hourly h
            JOIN billing_customers bc ON bc.user_id = h.user_id
            CROSS JOIN LATERAL (SELECT date_trunc('day', h.hour, 'UTC') AS d) day
            WHERE h.user_id IN ({users}) AND h.hour < @cutoff_day
              AND NOT EXISTS (SELECT 1 FROM usage_events e WHERE e.user_id = h.user_id AND e.occurred_at >= day.d AND e.occurred_at < day.d + interval '24 hours' AND e.meter = h.meter)
              AND NOT EXISTS (SELECT 1 FROM usage_reports r WHERE r.stripe_customer_id = bc.stripe_customer_id AND r.meter = h.meter
                              AND ((r.period_start > day.d AND r.period_start < day.d + interval '24 hours')
                                OR (r.period_end > day.d AND r.period_end < day.d + interval '24 hours')))
            LIMIT @batch))
        """;

    // SQLite stores instants as Unix microseconds: an hour is 3 600 000 000, a day 86 400 000 000.
    private const string SqliteEventsSql = """
        DELETE FROM usage_events WHERE id IN (
            SELECT e.id FROM usage_events e
            JOIN usage_reports r ON r.id = e.report_id
            WHERE e.user_id IN ({users}) AND e.occurred_at < @cutoff AND r.sent_at < @cutoff
              AND r.status = 'sent' AND r.period_end <= @cutoff
              AND (r.period_start % 3600000000 = 0 OR e.occurred_at >= r.period_start - r.period_start % 3600000000 + 3600000000)
              AND (r.period_end % 3600000000 = 0 OR e.occurred_at < r.period_end - r.period_end % 3600000000)
              AND NOT EXISTS (SELECT 1 FROM usage_corrections c WHERE c.report_id = r.id AND c.status = 'pending')
            LIMIT @batch)
        """;

    private const string SqliteHourlySql = """
        DELETE FROM usage_hourly WHERE rowid IN (
            SELECT h.rowid FROM usage_hourly h
            JOIN billing_customers bc ON bc.user_id = h.user_id
            WHERE h.user_id IN ({users}) AND h.hour < @cutoff_day
              AND NOT EXISTS (SELECT 1 FROM usage_events e WHERE e.user_id = h.user_id AND e.meter = h.meter
                              AND e.occurred_at >= h.hour - h.hour % 86400000000 AND e.occurred_at < h.hour - h.hour % 86400000000 + 86400000000)
              AND NOT EXISTS (SELECT 1 FROM usage_reports r WHERE r.stripe_customer_id = bc.stripe_customer_id AND r.meter = h.meter
                              AND ((r.period_start > h.hour - h.hour % 86400000000 AND r.period_start < h.hour - h.hour % 86400000000 + 86400000000)
                                OR (r.period_end > h.hour - h.hour % 86400000000 AND r.period_end < h.hour - h.hour % 86400000000 + 86400000000)))
            LIMIT @batch)
        """;

    public async Task<UsagePruneResult> PruneAsync(DateTimeOffset cutoff, int batchSize, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var cutoffDay = UsageRollup.FloorDay(cutoff);
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var connection = context.Database.GetDbConnection();
        await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            long events = 0, hourly = 0;
            var accounts = 0;
            object? after = null;
            while (true)
            {
                var page = await AccountsAsync(connection, after, cancellationToken).ConfigureAwait(false);
                if (page.Count > 0)
                {
                    accounts += page.Count;
                    events += await DeleteInBatchesAsync(connection, postgres ? PostgresEventsSql : SqliteEventsSql, page, cutoff, cutoffDay, batchSize, cancellationToken).ConfigureAwait(false);
                    hourly += await DeleteInBatchesAsync(connection, postgres ? PostgresHourlySql : SqliteHourlySql, page, cutoff, cutoffDay, batchSize, cancellationToken).ConfigureAwait(false);
                }

                if (page.Count < AccountsPerPage)
                {
                    break;
                }

                after = page[^1];
            }

            return new UsagePruneResult(cutoff, events, hourly, accounts);
        }
        finally
        {
            await context.Database.CloseConnectionAsync().ConfigureAwait(false);
        }
    }

    // The user id is passed back as the database returned it (uuid on PostgreSQL, the stored text on SQLite).
    private static async Task<List<object>> AccountsAsync(DbConnection connection, object? after, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = after is null
            ? $"SELECT user_id FROM billing_customers ORDER BY user_id LIMIT {AccountsPerPage}"
            : $"SELECT user_id FROM billing_customers WHERE user_id > @after ORDER BY user_id LIMIT {AccountsPerPage}";
        if (after is not null)
        {
            Add(command, "after", after);
        }

        var page = new List<object>(AccountsPerPage);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            page.Add(reader.GetValue(0));
        }

        return page;
    }

    private async Task<long> DeleteInBatchesAsync(DbConnection connection, string sql, List<object> users, DateTimeOffset cutoff, DateTimeOffset cutoffDay, int batchSize, CancellationToken cancellationToken)
    {
        long total = 0;
        await using var command = connection.CreateCommand();
        command.CommandText = sql.Replace("{users}", string.Join(", ", users.Select((_, i) => "@u" + i.ToString(System.Globalization.CultureInfo.InvariantCulture))), StringComparison.Ordinal);
        command.CommandTimeout = 0;
        for (var i = 0; i < users.Count; i++)
        {
            Add(command, "u" + i.ToString(System.Globalization.CultureInfo.InvariantCulture), users[i]);
        }

        Add(command, "cutoff", Time(cutoff));
        Add(command, "cutoff_day", Time(cutoffDay));
        Add(command, "batch", batchSize);
        int deleted;
        do
        {
            cancellationToken.ThrowIfCancellationRequested();
            deleted = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            total += deleted;
        }
        while (deleted >= batchSize);

        return total;
    }

    private object Time(DateTimeOffset value) => postgres ? value : UsageBillingSqliteConventions.ToUnixMicroseconds(value);

    private static void Add(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }
}
