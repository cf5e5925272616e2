using UsageBilling.Storage;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using static UsageBilling.EntityFrameworkCore.UsageBillingSqliteConventions;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>
/// SQLite: one writer at a time (the transaction is IMMEDIATE), so claim, lease and marks need no row locks and
/// cannot deadlock; a lease is free when it lapsed or its owner's process on this machine is gone.
/// </summary>
internal sealed class SqliteFlushSqlDialect : IFlushSqlDialect
{
    public async Task<List<ClaimableEvent>> SelectClaimableAsync(DbConnection connection, DbTransaction transaction, int limit, Guid? userId, CancellationToken cancellationToken)
    {
        await using var command = ((SqliteConnection)connection).CreateCommand();
        command.Transaction = (SqliteTransaction)transaction;
        command.CommandText = $"""
            SELECT e.id, e.user_id, c.stripe_customer_id, e.meter, e.quantity, e.occurred_at
            FROM usage_events e
            JOIN billing_customers c ON c.user_id = e.user_id
            WHERE e.report_id IS NULL {(userId is null ? "" : "AND e.user_id = $user")}
            ORDER BY e.created_at
            LIMIT $limit
            """;
        command.Parameters.AddWithValue("$limit", limit);
        if (userId is { } user)
        {
            command.Parameters.Add(new SqliteParameter("$user", SqliteType.Text) { Value = SqliteUsageSqlDialect.GuidText(user) });
        }

        var events = new List<ClaimableEvent>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            events.Add(new ClaimableEvent(Guid.Parse(reader.GetString(0)), Guid.Parse(reader.GetString(1)), reader.GetString(2), reader.GetString(3), reader.GetInt64(4), FromUnixMicroseconds(reader.GetInt64(5))));
        }

        return events;
    }

    public async Task<Dictionary<(string Customer, string Meter, DateTimeOffset PeriodStart), Guid>> ExtendOpenReportsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<ReportGrowth> growth, CancellationToken cancellationToken)
    {
        // The IMMEDIATE transaction already holds the writer lock: nothing can lease a report between these statements.
        await using var select = ((SqliteConnection)connection).CreateCommand();
        select.Transaction = (SqliteTransaction)transaction;
        select.CommandText = """
            SELECT id FROM usage_reports
            WHERE stripe_customer_id = $customer AND meter = $meter AND period_start = $start
              AND status = 'pending' AND first_attempt_at IS NULL AND lease_expires_at IS NULL
            ORDER BY id
            LIMIT 1
            """;
        var customer = select.Parameters.Add("$customer", SqliteType.Text);
        var meter = select.Parameters.Add("$meter", SqliteType.Text);
        var start = select.Parameters.Add("$start", SqliteType.Integer);
        await using var update = ((SqliteConnection)connection).CreateCommand();
        update.Transaction = (SqliteTransaction)transaction;
        update.CommandText = "UPDATE usage_reports SET quantity = quantity + $q, event_count = event_count + $n, timestamp = max(timestamp, $t) WHERE id = $id";
        var id = update.Parameters.Add("$id", SqliteType.Text);
        var q = update.Parameters.Add("$q", SqliteType.Integer);
        var n = update.Parameters.Add("$n", SqliteType.Integer);
        var t = update.Parameters.Add("$t", SqliteType.Integer);
        var open = new Dictionary<(string, string, DateTimeOffset), Guid>();
        foreach (var g in growth)
        {
            customer.Value = g.Customer;
            meter.Value = g.Meter;
            start.Value = ToUnixMicroseconds(g.PeriodStart);
            if (await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not string text)
            {
                continue;
            }

            id.Value = text;
            q.Value = g.Quantity;
            n.Value = g.Events;
            t.Value = ToUnixMicroseconds(g.Timestamp);
            await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            open.Add((g.Customer, g.Meter, g.PeriodStart), Guid.Parse(text));
        }

        return open;
    }

    public async Task InsertReportsAsync(DbContext context, IReadOnlyList<UsageReport> reports, CancellationToken cancellationToken)
    {
        context.Set<UsageReport>().AddRange(reports);
        await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task AssignReportsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid EventId, DateTimeOffset OccurredAt, Guid ReportId)> links, CancellationToken cancellationToken)
    {
        await using var command = ((SqliteConnection)connection).CreateCommand();
        command.Transaction = (SqliteTransaction)transaction;
        command.CommandText = "UPDATE usage_events SET report_id = $report WHERE id = $event";
        var report = command.Parameters.Add("$report", SqliteType.Text);
        var evt = command.Parameters.Add("$event", SqliteType.Text);
        foreach (var (eventId, _, reportId) in links)
        {
            report.Value = SqliteUsageSqlDialect.GuidText(reportId);
            evt.Value = SqliteUsageSqlDialect.GuidText(eventId);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public bool HoldsSessionLocks => false;

    public Task BeginClaimAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task LockReportsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyCollection<Guid> reportIds, CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task<(bool Found, Guid? ReportId)> LockEventAsync(DbConnection connection, DbTransaction transaction, Guid eventId, CancellationToken cancellationToken)
    {
        await using var command = ((SqliteConnection)connection).CreateCommand();
        command.Transaction = (SqliteTransaction)transaction;
        command.CommandText = "SELECT report_id FROM usage_events WHERE id = $id";
        command.Parameters.Add(new SqliteParameter("$id", SqliteType.Text) { Value = SqliteUsageSqlDialect.GuidText(eventId) });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return (false, null);
        }

        return (true, reader.IsDBNull(0) ? null : Guid.Parse(reader.GetString(0)));
    }

    public Task ReleaseSessionLocksAsync(DbConnection connection, CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task<(List<LeasedReport> Reports, int HeldElsewhere)> LeaseAsync(DbConnection connection, DbTransaction? transaction, DateTimeOffset now, int limit, string? customerId, string owner, DateTimeOffset until, CancellationToken cancellationToken)
    {
        var sqlite = (SqliteConnection)connection;
        var tx = (SqliteTransaction?)transaction;

        // Due keys, most overdue first, a page at a time, with the owners of recent leases on each key. SQLite has no
        // session locks, so the owner's process stands in for one (all flushers of a SQLite file share a machine):
        // - an owner whose process is gone (killed) holds nothing, even before its lease lapses;
        // - a live owner holds its key until its lease lapsed by more than a grace of 3 lease durations (at least
        //   30 s): a flusher stalled by a busy database or a starved CPU cannot renew in time, but it may have
        //   Stripe's answer in hand and its mark on the way, so its reports are not taken from it for a stall;
        // - an owner that cannot be checked (another machine, an older name) holds until its lease lapses.
        var grace = TimeSpan.FromTicks(Math.Max((until - now).Ticks * 3, TimeSpan.FromSeconds(30).Ticks));
        var keys = new List<(string Customer, string Meter)>();
        var held = 0;
        var offset = 0;
        await using (var command = sqlite.CreateCommand())
        {
            command.Transaction = tx;
            command.CommandText = $"""
                SELECT r.stripe_customer_id, r.meter,
                       (SELECT group_concat(x.lease_owner || char(9) || x.lease_expires_at, char(10)) FROM usage_reports x
                        WHERE x.stripe_customer_id = r.stripe_customer_id AND x.meter = r.meter
                          AND x.status = 'pending' AND x.lease_owner IS NOT NULL AND x.lease_expires_at > $graceStart)
                FROM usage_reports r
                WHERE r.status = 'pending' AND r.next_attempt_at <= $now
                  {(customerId is null ? "" : "AND r.stripe_customer_id = $customer")}
                GROUP BY r.stripe_customer_id, r.meter
                ORDER BY min(r.next_attempt_at), r.stripe_customer_id, r.meter
                LIMIT $page OFFSET $offset
                """;
            command.Parameters.AddWithValue("$now", ToUnixMicroseconds(now));
            command.Parameters.AddWithValue("$graceStart", ToUnixMicroseconds(now - grace));
            var pageParameter = command.Parameters.Add("$page", SqliteType.Integer);
            var offsetParameter = command.Parameters.Add("$offset", SqliteType.Integer);
            if (customerId is not null)
            {
                command.Parameters.AddWithValue("$customer", customerId);
            }

            for (var page = 0; page < 50 && keys.Count < limit; page++)
            {
                var size = limit - keys.Count;
                pageParameter.Value = size;
                offsetParameter.Value = offset;
                var rows = 0;
                await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        rows++;
                        var holders = reader.IsDBNull(2) ? [] : reader.GetString(2).Split('\n');
                        if (holders.All(h => !Holds(h, owner, now)))
                        {
                            keys.Add((reader.GetString(0), reader.GetString(1)));
                        }
                        else
                        {
                            held++;
                        }
                    }
                }

                offset += size;
                if (rows < size)
                {
                    break;
                }
            }
        }

        var leased = new List<(LeasedReport Report, long Due)>();
        await using var lease = sqlite.CreateCommand();
        lease.Transaction = tx;
        lease.CommandText = """
            UPDATE usage_reports
            SET lease_owner = $owner, lease_expires_at = $until, first_attempt_at = COALESCE(first_attempt_at, $now)
            WHERE stripe_customer_id = $customer AND meter = $meter
              AND status = 'pending' AND next_attempt_at <= $now
            RETURNING id, stripe_customer_id, meter, quantity, timestamp, attempts, first_attempt_at, next_attempt_at
            """;
        lease.Parameters.AddWithValue("$owner", owner);
        lease.Parameters.AddWithValue("$until", ToUnixMicroseconds(until));
        lease.Parameters.AddWithValue("$now", ToUnixMicroseconds(now));
        var customerParameter = lease.Parameters.Add("$customer", SqliteType.Text);
        var meterParameter = lease.Parameters.Add("$meter", SqliteType.Text);
        foreach (var (customer, meter) in keys)
        {
            customerParameter.Value = customer;
            meterParameter.Value = meter;
            await using var reader = await lease.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                leased.Add((new LeasedReport(Guid.Parse(reader.GetString(0)), reader.GetString(1), reader.GetString(2), reader.GetInt64(3), FromUnixMicroseconds(reader.GetInt64(4)), reader.GetInt32(5), FromUnixMicroseconds(reader.GetInt64(6))), reader.GetInt64(7)));
            }
        }

        return ([.. leased.OrderBy(l => l.Due).ThenBy(l => l.Report.Id).Select(l => l.Report)], held);
    }

    /// <summary>Whether a lease (<c>owner TAB expires-at-micros</c>, within the grace) keeps its key from <paramref name="me"/>.</summary>
    private static bool Holds(string lease, string me, DateTimeOffset now)
    {
        var tab = lease.LastIndexOf('\t');
        var holder = lease[..tab];
        var expires = FromUnixMicroseconds(long.Parse(lease[(tab + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        if (holder == me)
        {
            return false;
        }

        return FlusherIdentity.Check(holder) switch
        {
            Liveness.Gone => false,
            Liveness.Alive => true,
            _ => expires > now,
        };
    }

    public async Task<List<RollupDelta>> AcknowledgedHourlyAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<Guid> reportIds, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var deltas = new List<RollupDelta>();
        foreach (var chunk in reportIds.Chunk(500))
        {
            await using var command = ((SqliteConnection)connection).CreateCommand();
            command.Transaction = (SqliteTransaction)transaction;
            var names = new string[chunk.Length];
            for (var i = 0; i < chunk.Length; i++)
            {
                names[i] = "$r" + i;
                command.Parameters.Add(new SqliteParameter(names[i], SqliteType.Text) { Value = SqliteUsageSqlDialect.GuidText(chunk[i]) });
            }

            command.CommandText = $"""
                SELECT user_id, (occurred_at / 3600000000) * 3600000000, meter, SUM(quantity), COUNT(*)
                FROM usage_events
                WHERE report_id IN ({string.Join(',', names)})
                GROUP BY 1, 2, 3
                """;
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                deltas.Add(new RollupDelta(Guid.Parse(reader.GetString(0)), FromUnixMicroseconds(reader.GetInt64(1)), reader.GetString(2), 0, 0, reader.GetInt64(3), reader.GetInt64(4), at));
            }
        }

        return deltas;
    }
}
