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
}

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
