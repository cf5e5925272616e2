using System.Data.Common;
using Npgsql;
using NpgsqlTypes;
using UsageBilling.Flushing;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>
/// PostgreSQL: claims with <c>FOR UPDATE SKIP LOCKED</c> so concurrent flushers take disjoint events;
/// leases serialize per customer·meter with transaction-scoped advisory locks.
/// </summary>
internal sealed class PostgresFlushSqlDialect : IFlushSqlDialect
{
    public async Task<List<ClaimableEvent>> SelectClaimableAsync(DbConnection connection, DbTransaction transaction, int limit, Guid? userId, CancellationToken cancellationToken)
    {
        var sql = $"""
            SELECT e.id, e.user_id, c.stripe_customer_id, e.meter, e.quantity, e.occurred_at
            FROM usage_events e
            JOIN billing_customers c ON c.user_id = e.user_id
            WHERE e.report_id IS NULL {(userId is null ? "" : "AND e.user_id = @user")}
            ORDER BY e.created_at
            LIMIT @limit
            FOR UPDATE OF e SKIP LOCKED
            """;
        await using var command = new NpgsqlCommand(sql, (NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        command.Parameters.Add(new NpgsqlParameter<int>("limit", limit));
        if (userId is { } user)
        {
            command.Parameters.Add(new NpgsqlParameter<Guid>("user", user));
        }

        var events = new List<ClaimableEvent>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            events.Add(new ClaimableEvent(reader.GetGuid(0), reader.GetGuid(1), reader.GetString(2), reader.GetString(3), reader.GetInt64(4), reader.GetFieldValue<DateTimeOffset>(5)));
        }

        return events;
    }

    public async Task<Dictionary<(string Customer, string Meter, DateTimeOffset PeriodStart), Guid>> LockOpenReportsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyCollection<(string Customer, string Meter, DateTimeOffset PeriodStart)> keys, CancellationToken cancellationToken)
    {
        // A lease in progress holds the row: SKIP LOCKED lets this claim open a new report instead of waiting.
        const string sql = """
            SELECT r.id, r.stripe_customer_id, r.meter, r.period_start
            FROM usage_reports r
            JOIN unnest(@customers, @meters, @starts) AS k(c, m, ps)
              ON r.stripe_customer_id = k.c AND r.meter = k.m AND r.period_start = k.ps
            WHERE r.status = 'pending' AND r.first_attempt_at IS NULL AND r.lease_expires_at IS NULL
            FOR UPDATE OF r SKIP LOCKED
            """;
        await using var command = new NpgsqlCommand(sql, (NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        command.Parameters.Add(new NpgsqlParameter<string[]>("customers", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. keys.Select(k => k.Customer)] });
        command.Parameters.Add(new NpgsqlParameter<string[]>("meters", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. keys.Select(k => k.Meter)] });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("starts", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. keys.Select(k => k.PeriodStart)] });
        var open = new Dictionary<(string, string, DateTimeOffset), Guid>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            open.TryAdd((reader.GetString(1), reader.GetString(2), reader.GetFieldValue<DateTimeOffset>(3)), reader.GetGuid(0));
        }

        return open;
    }

    public async Task ExtendReportsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid ReportId, long Quantity, int Events, DateTimeOffset Timestamp)> growth, CancellationToken cancellationToken)
    {
        const string sql = """
            UPDATE usage_reports r
            SET quantity = r.quantity + g.q, event_count = r.event_count + g.n, timestamp = GREATEST(r.timestamp, g.t)
            FROM unnest(@ids, @quantities, @counts, @times) AS g(id, q, n, t)
            WHERE r.id = g.id
            """;
        await using var command = new NpgsqlCommand(sql, (NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. growth.Select(g => g.ReportId)] });
        command.Parameters.Add(new NpgsqlParameter<long[]>("quantities", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = [.. growth.Select(g => g.Quantity)] });
        command.Parameters.Add(new NpgsqlParameter<int[]>("counts", NpgsqlDbType.Array | NpgsqlDbType.Integer) { TypedValue = [.. growth.Select(g => g.Events)] });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("times", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. growth.Select(g => g.Timestamp)] });
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task AssignReportsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid EventId, Guid ReportId)> links, CancellationToken cancellationToken)
    {
        const string sql = """
            UPDATE usage_events e SET report_id = v.report_id
            FROM unnest(@events, @reports) AS v(event_id, report_id)
            WHERE e.id = v.event_id
            """;
        await using var command = new NpgsqlCommand(sql, (NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("events", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. links.Select(l => l.EventId)] });
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("reports", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. links.Select(l => l.ReportId)] });
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<List<LeasedReport>> LeaseAsync(DbConnection connection, DbTransaction transaction, DateTimeOffset now, int limit, string? customerId, string owner, DateTimeOffset until, CancellationToken cancellationToken)
    {
        var npgsql = (NpgsqlConnection)connection;
        var tx = (NpgsqlTransaction)transaction;

        // 1. Due keys, most overdue first.
        var keysSql = $"""
            SELECT stripe_customer_id, meter FROM usage_reports
            WHERE status = 'pending' AND next_attempt_at <= @now
              AND (lease_expires_at IS NULL OR lease_expires_at <= @now)
              {(customerId is null ? "" : "AND stripe_customer_id = @customer")}
            GROUP BY stripe_customer_id, meter
            ORDER BY min(next_attempt_at)
            LIMIT @limit
            """;
        var customers = new List<string>();
        var meters = new List<string>();
        await using (var command = new NpgsqlCommand(keysSql, npgsql, tx))
        {
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
            command.Parameters.Add(new NpgsqlParameter<int>("limit", limit));
            if (customerId is not null)
            {
                command.Parameters.Add(new NpgsqlParameter<string>("customer", customerId));
            }

            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                customers.Add(reader.GetString(0));
                meters.Add(reader.GetString(1));
            }
        }

        if (customers.Count == 0)
        {
            return [];
        }

        // 2. Take the keys no other flusher is leasing right now (held until this transaction ends).
        var lockedCustomers = new List<string>();
        var lockedMeters = new List<string>();
        await using (var command = new NpgsqlCommand(
            "SELECT c, m FROM unnest(@customers, @meters) AS k(c, m) WHERE pg_try_advisory_xact_lock(hashtextextended(c || '|' || m, 7817))",
            npgsql,
            tx))
        {
            command.Parameters.Add(new NpgsqlParameter<string[]>("customers", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. customers] });
            command.Parameters.Add(new NpgsqlParameter<string[]>("meters", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. meters] });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                lockedCustomers.Add(reader.GetString(0));
                lockedMeters.Add(reader.GetString(1));
            }
        }

        if (lockedCustomers.Count == 0)
        {
            return [];
        }

        // 3. A new statement sees every lease committed before we got the lock: skip keys with a live lease.
        const string leaseSql = """
            UPDATE usage_reports r
            SET lease_owner = @owner, lease_expires_at = @until, first_attempt_at = COALESCE(r.first_attempt_at, @now)
            FROM unnest(@customers, @meters) AS k(c, m)
            WHERE r.stripe_customer_id = k.c AND r.meter = k.m
              AND r.status = 'pending' AND r.next_attempt_at <= @now
              AND NOT EXISTS (
                SELECT 1 FROM usage_reports x
                WHERE x.stripe_customer_id = k.c AND x.meter = k.m AND x.status = 'pending' AND x.lease_expires_at > @now)
            RETURNING r.id, r.stripe_customer_id, r.meter, r.quantity, r.timestamp, r.attempts, r.first_attempt_at
            """;
        var leased = new List<LeasedReport>();
        await using (var command = new NpgsqlCommand(leaseSql, npgsql, tx))
        {
            command.Parameters.Add(new NpgsqlParameter<string>("owner", owner));
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("until", until));
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
            command.Parameters.Add(new NpgsqlParameter<string[]>("customers", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. lockedCustomers] });
            command.Parameters.Add(new NpgsqlParameter<string[]>("meters", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. lockedMeters] });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                leased.Add(new LeasedReport(reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetInt64(3), reader.GetFieldValue<DateTimeOffset>(4), reader.GetInt32(5), reader.GetFieldValue<DateTimeOffset>(6)));
            }
        }

        return leased;
    }

    public async Task<List<RollupDelta>> AcknowledgedHourlyAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<Guid> reportIds, DateTimeOffset at, CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT user_id, date_bin('1 hour', occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), meter, SUM(quantity)::bigint, COUNT(*)
            FROM usage_events
            WHERE report_id = ANY(@reports) AND reported_at IS NULL
            GROUP BY 1, 2, 3
            """;
        await using var command = new NpgsqlCommand(sql, (NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("reports", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. reportIds] });
        var deltas = new List<RollupDelta>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            deltas.Add(new RollupDelta(reader.GetGuid(0), reader.GetFieldValue<DateTimeOffset>(1), reader.GetString(2), 0, 0, reader.GetInt64(3), reader.GetInt64(4), at));
        }

        return deltas;
    }
}
