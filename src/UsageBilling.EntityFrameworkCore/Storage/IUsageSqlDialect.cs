using System.Data.Common;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>The provider-specific SQL of the hot paths, where EF's change tracker would be the bottleneck.</summary>
internal interface IUsageSqlDialect
{
    int DefaultConcurrentBatches { get; }

    /// <summary>Multi-row insert skipping existing (user, key) rows; returns the ids actually inserted.</summary>
    Task<HashSet<Guid>> InsertAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken);

    /// <summary>The stored rows for the given (user, key) pairs.</summary>
    Task<Dictionary<(Guid UserId, string Key), StoredEventOutcome>> FindByKeysAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid UserId, string Key)> keys, CancellationToken cancellationToken);

    /// <summary>The user's customer, plan and metered items in one round trip (a LEFT JOIN); <see langword="null"/> without a customer.</summary>
    Task<BillingState?> BillingStateAsync(DbConnection connection, Guid userId, CancellationToken cancellationToken);

    /// <summary>
    /// Adds the deltas to <c>usage_hourly</c>, then to <c>usage_daily</c>, creating missing rows; rows
    /// are written in the given (lock) order.
    /// </summary>
    Task UpsertRollupsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<RollupDelta> hourly, IReadOnlyList<RollupDelta> daily, CancellationToken cancellationToken);

    /// <summary>
    /// Usage per meter and UTC day over <paramref name="ranges"/>: whole days from <c>usage_daily</c>,
    /// the whole hours of the ragged days from <c>usage_hourly</c>, the ragged hours from
    /// <c>usage_events</c>. A (meter, day) may appear more than once; callers merge.
    /// </summary>
    Task<IReadOnlyList<MeterDayUsage>> UsageByDayAsync(DbConnection connection, Guid userId, RollupRanges ranges, CancellationToken cancellationToken);

    bool IsForeignKeyViolation(Exception exception);

    /// <summary>The billing state and own settings of each of <paramref name="users"/> (users without either get an empty entry).</summary>
    Task<Dictionary<Guid, AccountLimits>> AccountsAsync(DbConnection connection, DbTransaction? transaction, IReadOnlyCollection<Guid> users, CancellationToken cancellationToken);

    /// <summary>
    /// In one round trip where the provider can: reads the accounts of <paramref name="users"/>, creates
    /// (seeded from the events already stored in the period) or locks the period totals of
    /// <paramref name="keys"/>, which come in <see cref="PeriodKey.LockOrder"/> and were predicted before
    /// the accounts were read (the caller checks them), and inserts the events. Returns each period's
    /// total before this batch and what its row holds now (a provider may have added the batch's
    /// <c>Delta</c> optimistically; the caller writes the final value only where it differs).
    /// </summary>
    Task<GuardRead> AccountsLockAndInsertAsync(DbConnection connection, DbTransaction transaction, IReadOnlyCollection<Guid> users, IReadOnlyList<(PeriodKey Key, DateTimeOffset End, PeriodTotals Delta)> keys, IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken);

    /// <summary>
    /// <see cref="UpsertRollupsAsync"/>, then writes the new values of the locked period totals and inserts
    /// the alerts (a repeat of an account·meter·period·threshold is skipped), in one round trip where the provider can.
    /// </summary>
    Task WriteGuardedBatchAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<RollupDelta> hourly, IReadOnlyList<RollupDelta> daily, IReadOnlyList<(PeriodKey Key, PeriodTotals Totals)> totals, IReadOnlyList<NewUsageAlert> alerts, CancellationToken cancellationToken);

    /// <summary>Deletes events this transaction inserted and the guard refused.</summary>
    Task DeleteEventsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid Id, DateTimeOffset OccurredAt)> events, CancellationToken cancellationToken);
}

/// <summary>What the first half of a guarded batch read.</summary>
/// <param name="Accounts">The accounts of the batch's users.</param>
/// <param name="Before">Each period's total before this batch.</param>
/// <param name="Stored">What each period's row holds now.</param>
/// <param name="Inserted">The ids of the events actually inserted.</param>
internal sealed record GuardRead(Dictionary<Guid, AccountLimits> Accounts, Dictionary<PeriodKey, PeriodTotals> Before, Dictionary<PeriodKey, PeriodTotals> Stored, HashSet<Guid> Inserted);

/// <summary>The billing-state read both dialects run: the same SQL and row shape, bound and timed per provider.</summary>
internal static class BillingStateQuery
{
    /// <summary>The user's customer, plan and metered items; both providers accept <c>@user</c>.</summary>
    public const string Sql = """
        SELECT c.stripe_customer_id, c.plan_id, i.id, i.meter, i.current_period_start, i.current_period_end
        FROM billing_customers c
        LEFT JOIN billing_subscription_items i ON i.user_id = c.user_id AND i.meter IS NOT NULL
        WHERE c.user_id = @user
        """;

    /// <summary>The same read for several users; <c>= @users</c> is replaced by each provider's list form.</summary>
    public const string ManySql = """
        SELECT c.user_id, c.stripe_customer_id, c.plan_id, i.id, i.meter, i.current_period_start, i.current_period_end
        FROM billing_customers c
        LEFT JOIN billing_subscription_items i ON i.user_id = c.user_id AND i.meter IS NOT NULL
        WHERE c.user_id = @users
        """;

    /// <summary>Reads the rows of <see cref="ManySql"/> into per-user partial states.</summary>
    public static async Task<Dictionary<Guid, AccountRows>> ReadManyAsync(DbDataReader reader, Func<DbDataReader, int, DateTimeOffset> readTime, CancellationToken cancellationToken, Func<DbDataReader, int, Guid>? readGuid = null, Dictionary<Guid, AccountRows>? into = null)
    {
        readGuid ??= static (r, i) => r.GetGuid(i);
        var result = into ?? [];
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var user = readGuid(reader, 0);
            if (!result.TryGetValue(user, out var rows))
            {
                result[user] = rows = new AccountRows();
            }

            rows.Customer = reader.GetString(1);
            rows.Plan = reader.IsDBNull(2) ? null : reader.GetString(2);
            if (!reader.IsDBNull(3))
            {
                rows.Items.Add(new SubscriptionItemPeriod(reader.GetString(3), reader.GetString(4), readTime(reader, 5), readTime(reader, 6)));
            }
        }

        return result;
    }

    /// <summary>Reads <c>user_id, meter, spend_cap, quantity_cap, alert_thresholds</c> rows into <paramref name="into"/>.</summary>
    public static async Task ReadSettingsAsync(DbDataReader reader, Dictionary<Guid, AccountRows> into, Func<DbDataReader, int, decimal> readDecimal, CancellationToken cancellationToken, Func<DbDataReader, int, Guid>? readGuid = null)
    {
        readGuid ??= static (r, i) => r.GetGuid(i);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var user = readGuid(reader, 0);
            if (!into.TryGetValue(user, out var rows))
            {
                into[user] = rows = new AccountRows();
            }

            rows.Settings[reader.GetString(1)] = new AccountMeterSettings(
                reader.IsDBNull(2) ? null : readDecimal(reader, 2),
                reader.IsDBNull(3) ? null : reader.GetInt64(3),
                AccountMeterSettings.ParseAlerts(reader.IsDBNull(4) ? null : reader.GetString(4)));
        }
    }

    /// <summary>The accounts of the rows read.</summary>
    public static Dictionary<Guid, AccountLimits> ToAccounts(Dictionary<Guid, AccountRows> rows) =>
        rows.ToDictionary(
            r => r.Key,
            r => new AccountLimits(r.Value.Customer is null ? null : new BillingState(r.Key, r.Value.Customer, r.Value.Plan, r.Value.Items), r.Value.Settings));

    /// <summary>One account's rows while they are read.</summary>
    internal sealed class AccountRows
    {
        public string? Customer { get; set; }

        public string? Plan { get; set; }

        public List<SubscriptionItemPeriod> Items { get; } = [];

        public Dictionary<string, AccountMeterSettings> Settings { get; } = new(StringComparer.Ordinal);
    }

    /// <summary>Reads the rows of <see cref="Sql"/>; <see langword="null"/> without a customer.</summary>
    public static async Task<BillingState?> ReadAsync(DbDataReader reader, Guid userId, Func<DbDataReader, int, DateTimeOffset> readTime, CancellationToken cancellationToken)
    {
        string? customer = null, plan = null;
        var items = new List<SubscriptionItemPeriod>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            customer = reader.GetString(0);
            plan = reader.IsDBNull(1) ? null : reader.GetString(1);
            if (!reader.IsDBNull(2))
            {
                items.Add(new SubscriptionItemPeriod(reader.GetString(2), reader.GetString(3), readTime(reader, 4), readTime(reader, 5)));
            }
        }

        return customer is null ? null : new BillingState(userId, customer, plan, items);
    }
}
