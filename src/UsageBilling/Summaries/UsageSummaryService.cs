using Microsoft.Extensions.Options;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>Computes summaries from the store's aggregates and the configured plans.</summary>
internal sealed class UsageSummaryService(IUsageStore store, IOptions<UsageBillingOptions> options, TimeProvider time, ISpendControlStore? spend = null) : IUsageSummaryService
{
    private readonly UsageBillingOptions _options = options.Value;
    private readonly UsageGuard _guard = new(options.Value);

    public async Task<UsageSummary> GetCurrentPeriodAsync(Guid userId, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        AccountLimits? account = spend is null ? null : await spend.GetAccountLimitsAsync(userId, cancellationToken).ConfigureAwait(false);
        var state = account is not null ? account.State : await store.GetBillingStateAsync(userId, cancellationToken).ConfigureAwait(false);
        account ??= new AccountLimits(state, new Dictionary<string, AccountMeterSettings>());
        var planId = state?.PlanId ?? _options.DefaultPlan;
        PlanDefinition? plan = null;
        if (planId is not null && !_options.Plans.TryGetValue(planId, out plan))
        {
            planId = null;
        }

        // Meters usually share one period; read each distinct period once (one rollup query).
        var periods = _options.Meters.Keys.ToDictionary(m => m, m => BillingPeriod.For(now, BillingPeriod.ItemFor(state, m)), StringComparer.Ordinal);
        var days = new Dictionary<string, List<MeterDayUsage>>(StringComparer.Ordinal);
        foreach (var period in periods.Values.Distinct())
        {
            foreach (var row in await store.GetUsageByDayAsync(userId, period.Start, period.End, cancellationToken).ConfigureAwait(false))
            {
                if (periods.TryGetValue(row.Meter, out var p) && p == period)
                {
                    if (!days.TryGetValue(row.Meter, out var list))
                    {
                        days[row.Meter] = list = [];
                    }

                    list.Add(row);
                }
            }
        }

        var meters = new List<MeterUsageSummary>(_options.Meters.Count);
        decimal total = plan?.MonthlyPrice ?? 0m;
        foreach (var (name, meter) in _options.Meters.OrderBy(m => m.Key, StringComparer.Ordinal))
        {
            var period = periods[name];
            var rows = days.TryGetValue(name, out var list) ? list : [];
            var count = meter.Aggregation == MeterAggregation.Count;
            long used = 0, pending = 0;
            DateTimeOffset? reportedAsOf = null;
            foreach (var row in rows)
            {
                used += count ? row.Count : row.Total;
                pending += count ? row.PendingCount : row.PendingTotal;
                if (row.LastReportedAt is { } at && (reportedAsOf is null || at > reportedAsOf))
                {
                    reportedAsOf = at;
                }
            }

            PriceSchedule? schedule = plan is not null && plan.Meters.TryGetValue(name, out var price) ? PriceSchedule.From(price) : null;
            var included = schedule?.Included ?? 0;
            var cost = schedule?.CostOf(used) ?? 0m;
            total += cost;
            var percent = included > 0 ? used * 100.0 / included : used > 0 ? 100.0 : 0.0;
            var rule = _guard.RuleFor(userId, name, now, account);
            meters.Add(new MeterUsageSummary(
                name,
                meter.DisplayName ?? name,
                meter.Unit,
                used,
                included,
                Math.Max(0, included - used),
                percent,
                schedule?.HardLimit,
                period.Start,
                period.End,
                cost,
                Math.Max(0, pending),
                reportedAsOf,
                EveryDay(period, now, rows))
            {
                Limit = _options.Limits.Enforce ? LimitStateOf(rule, used) : null,
                SpendLimit = rule.SpendLimit,
            });
        }

        return new UsageSummary(userId, planId, plan is null ? null : plan.DisplayName ?? planId, plan?.Currency ?? "usd", plan?.MonthlyPrice ?? 0m, total, now, meters);
    }

    public async Task<IReadOnlyList<DailyUsage>> GetDailyUsageAsync(Guid userId, string meter, CancellationToken cancellationToken = default)
    {
        if (!_options.Meters.ContainsKey(meter))
        {
            throw new UnknownMeterException($"Unknown meter '{meter}'. Configured meters: {string.Join(", ", _options.Meters.Keys)}.");
        }

        var summary = await GetCurrentPeriodAsync(userId, cancellationToken).ConfigureAwait(false);
        return summary.Meters.Single(m => m.Meter == meter).Daily;
    }

    /// <summary>The limit bounding the period, if any, and whether one more unit would be refused.</summary>
    internal static UsageLimitState? LimitStateOf(MeterRule rule, long used)
    {
        if (rule.MaxUnits() is not { } max)
        {
            return null;
        }

        var kind = rule.QuantityLimit is { } q && q <= max ? rule.QuantityLimitKind : rule.SpendLimitKind;
        return new UsageLimitState(kind, max, rule.SpendLimit, rule.Refusal(used, 1) is not null, rule.Period.End);
    }

    /// <summary>Every UTC day of the period up to today, zero days included.</summary>
    private static List<DailyUsage> EveryDay(BillingPeriod period, DateTimeOffset now, List<MeterDayUsage> rows)
    {
        var byDay = rows.ToDictionary(r => r.Day);
        var result = new List<DailyUsage>();
        var last = DateOnly.FromDateTime(now.UtcDateTime);
        for (var day = DateOnly.FromDateTime(period.Start.UtcDateTime); day <= last && day.ToDateTime(TimeOnly.MinValue) < period.End.UtcDateTime; day = day.AddDays(1))
        {
            result.Add(byDay.TryGetValue(day, out var d) ? new DailyUsage(day, d.Total, d.Count) : new DailyUsage(day, 0, 0));
        }

        return result;
    }
}
