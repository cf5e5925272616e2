using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>A customer's usage in the current billing period, read from the local database.</summary>
/// <param name="UserId">The app's user id.</param>
/// <param name="PlanId">The user's plan, if any.</param>
/// <param name="PlanName">The plan's display name, if any.</param>
/// <param name="Currency">The plan's currency (<c>usd</c> when there is no plan).</param>
/// <param name="FlatFee">The plan's flat monthly fee.</param>
/// <param name="ProjectedTotal">Flat fee plus every meter's projected cost.</param>
/// <param name="GeneratedAt">When the summary was computed.</param>
/// <param name="Meters">One entry per configured meter.</param>
public sealed record UsageSummary(
    Guid UserId,
    string? PlanId,
    string? PlanName,
    string Currency,
    decimal FlatFee,
    decimal ProjectedTotal,
    DateTimeOffset GeneratedAt,
    IReadOnlyList<MeterUsageSummary> Meters);

/// <summary>Usage of one meter in the current period.</summary>
/// <param name="Meter">The meter event name.</param>
/// <param name="DisplayName">The meter's display name.</param>
/// <param name="Unit">The unit label, if configured.</param>
/// <param name="Used">The period's aggregated usage (sum or count), unreported events included.</param>
/// <param name="Included">The plan's free allowance.</param>
/// <param name="Remaining">Allowance left, never below zero.</param>
/// <param name="PercentOfIncluded">Used as a percentage of the allowance (0 when there is no allowance and no usage, 100 when usage exists without allowance).</param>
/// <param name="HardLimit">The plan's hard limit, if any.</param>
/// <param name="PeriodStart">Inclusive period start.</param>
/// <param name="PeriodEnd">Exclusive period end.</param>
/// <param name="ProjectedCost">Cost of <paramref name="Used"/> under the plan's tiers, in currency units.</param>
/// <param name="PendingQuantity">Usage not yet acknowledged by Stripe.</param>
/// <param name="ReportedAsOf">When Stripe last acknowledged usage of this period, if ever.</param>
/// <param name="Daily">Usage per UTC day of the period, from its first day up to today, zero days included.</param>
public sealed record MeterUsageSummary(
    string Meter,
    string DisplayName,
    string? Unit,
    long Used,
    long Included,
    long Remaining,
    double PercentOfIncluded,
    long? HardLimit,
    DateTimeOffset PeriodStart,
    DateTimeOffset PeriodEnd,
    decimal ProjectedCost,
    long PendingQuantity,
    DateTimeOffset? ReportedAsOf,
    IReadOnlyList<DailyUsage> Daily)
{
    /// <summary>The limit in force this period (plan limits, the account's caps, the no-plan policy), if any.</summary>
    public UsageLimitState? Limit { get; init; }

    /// <summary>The spend limit in force (the plan's or the account's lower cap), if any, in currency units.</summary>
    public decimal? SpendLimit { get; init; }

    /// <summary>Whether no further unit can be recorded this period (see <see cref="Limit"/>; it resets at <see cref="PeriodEnd"/>).</summary>
    public bool LimitReached => Limit?.Reached ?? (HardLimit is { } limit && Used >= limit);
}
