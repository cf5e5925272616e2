using System.Globalization;

namespace UsageBilling.Web.Components.Shared;

/// <summary>Which of the usage page's states a meter is in this period.</summary>
public enum MeterState
{
    /// <summary>The account has no plan: the no-plan policy decides what may be used.</summary>
    NoPlan,

    /// <summary>Below the alert level of the allowance.</summary>
    Within,

    /// <summary>A threshold of the allowance is crossed (80 % or more), the allowance not yet used up.</summary>
    Threshold,

    /// <summary>Past the allowance: further units are billed, and a limit (if any) is still ahead.</summary>
    Overage,

    /// <summary>A limit is reached: nothing more can be used until the period ends.</summary>
    LimitReached,
}

/// <summary>
/// What the usage page says about one meter, decided once so the words always fit the figures: the state, the
/// headline, the bar's fill and the price of the next unit (from the plan's <see cref="PriceSchedule"/>).
/// </summary>
public sealed class MeterView
{
    /// <summary>The share of the allowance from which the page warns.</summary>
    public const double WarnPercent = 80;

    private MeterView(MeterUsageSummary usage, MeterState state, string headline, double percent, PriceSchedule? schedule, decimal? nextUnitPrice)
    {
        Usage = usage;
        State = state;
        Headline = headline;
        Percent = percent;
        Schedule = schedule;
        NextUnitPrice = nextUnitPrice;
    }

    /// <summary>The meter's summary.</summary>
    public MeterUsageSummary Usage { get; }

    /// <summary>The state the page shows.</summary>
    public MeterState State { get; }

    /// <summary>The sentence under the meter's name.</summary>
    public string Headline { get; }

    /// <summary>How full the bar is, 0–100 (of the allowance, or of the no-plan allowance).</summary>
    public double Percent { get; }

    /// <summary>The plan's prices for this meter; <see langword="null"/> without a plan (nothing is billed).</summary>
    public PriceSchedule? Schedule { get; }

    /// <summary>What one more unit would cost now, under the plan's tiers.</summary>
    public decimal? NextUnitPrice { get; }

    /// <summary>At a limit: the headline up to the reset time, which the page marks up on its own.</summary>
    public string? BeforeReset => State == MeterState.LimitReached ? Headline[..Headline.LastIndexOf(" until ", StringComparison.Ordinal)] + " until " : null;

    /// <summary>The CSS level of the bar: ok, warn or over.</summary>
    public string Level => State switch
    {
        MeterState.LimitReached or MeterState.Overage => "over",
        MeterState.Threshold => "warn",
        MeterState.NoPlan => Percent >= 100 ? "over" : Percent >= WarnPercent ? "warn" : "ok",
        _ => "ok",
    };

    /// <summary>The state as the page's <c>data-state</c> attribute: no-plan, within, threshold, overage, limit-reached.</summary>
    public string StateName => State switch
    {
        MeterState.NoPlan => "no-plan",
        MeterState.Within => "within",
        MeterState.Threshold => "threshold",
        MeterState.Overage => "overage",
        _ => "limit-reached",
    };

    /// <summary>
    /// Decides the state of <paramref name="m"/> for an account on <paramref name="plan"/> (or none); <paramref name="alerted"/>
    /// says a usage alert of this meter fired this period (the account's own thresholds may lie below 80 %).
    /// </summary>
    public static MeterView For(MeterUsageSummary m, PlanDefinition? plan, string currency, bool alerted = false)
    {
        ArgumentNullException.ThrowIfNull(m);
        var unit = m.Unit ?? "units";
        var schedule = plan is not null && plan.Meters.TryGetValue(m.Meter, out var price) ? PriceSchedule.From(price) : null;
        var until = Money.Time(m.PeriodEnd);
        if (schedule is null)
        {
            return NoPlan(m, unit, until);
        }

        var next = schedule.CostOf(m.Used + 1) - schedule.CostOf(m.Used);
        if (m.LimitReached)
        {
            var max = m.Limit?.MaxUnits ?? m.HardLimit ?? m.Used;
            return new(m, MeterState.LimitReached,
                $"{LimitName(m.Limit?.Kind)} reached: {Money.Count(m.Used)} of {Money.Count(max)} {unit} used; nothing more can be used until {until}, when the period ends.",
                100, schedule, null);
        }

        if (m.Used > m.Included)
        {
            var over = m.Used - m.Included;
            var left = m.Limit is { } limit ? $"; at most {Money.Count(Math.Max(0, limit.MaxUnits - m.Used))} more until the limit of {Money.Count(limit.MaxUnits)}" : "";
            return new(m, MeterState.Overage,
                $"Allowance of {Money.Count(m.Included)} used up: {Money.Count(over)} over it, billed at {Money.UnitPrice(next, currency)} each now{left}.",
                100, schedule, next);
        }

        var percent = m.Included > 0 ? m.Used * 100.0 / m.Included : 0;
        var firstBilled = Money.UnitPrice(schedule.CostOf(m.Included + 1) - schedule.CostOf(m.Included), currency);
        if (m.Included > 0 && (percent >= WarnPercent || alerted))
        {
            return new(m, MeterState.Threshold,
                $"Nearly through your allowance: {Money.Count(m.Remaining)} more {Units(m.Remaining, unit)} before each costs {firstBilled}.",
                percent, schedule, next);
        }

        return m.Included > 0
            ? new(m, MeterState.Within, $"Within your allowance: {Money.Count(m.Remaining)} more {Units(m.Remaining, unit)} before each costs {firstBilled}.", percent, schedule, next)
            : new(m, MeterState.Within, $"No allowance on this plan: each costs {Money.UnitPrice(next, currency)}.", percent, schedule, next);
    }

    /// <summary>The limit's name as a sentence starts it ("The plan's limit", "Your spend cap").</summary>
    public static string LimitName(UsageLimitKind? kind) => kind switch
    {
        UsageLimitKind.CustomerSpendCap => "Your spend cap",
        UsageLimitKind.CustomerQuantityCap => "Your usage cap",
        UsageLimitKind.SpendLimit => "The plan's spend limit",
        UsageLimitKind.NoPlan => "No plan",
        UsageLimitKind.NoPlanAllowance => "The free allowance without a plan",
        _ => "The plan's limit",
    };

    /// <summary>"1 message", "2 messages": the configured unit is plural.</summary>
    private static string Units(long count, string unit) => count == 1 && unit.Length > 1 && unit.EndsWith('s') ? unit[..^1] : unit;

    private static MeterView NoPlan(MeterUsageSummary m, string unit, string until)
    {
        var text = m.Limit switch
        {
            { Kind: UsageLimitKind.NoPlanAllowance, Reached: true } l =>
                $"No plan. Without one you may use {Money.Count(l.MaxUnits)} {unit} free per month, and you have used them all: nothing more until {until}, or choose a plan.",
            { Kind: UsageLimitKind.NoPlanAllowance } l =>
                $"No plan. Without one you may use {Money.Count(l.MaxUnits)} {unit} free per month: {Money.Count(m.Used)} used, {Money.Count(Math.Max(0, l.MaxUnits - m.Used))} left until {until}. Nothing is billed.",
            { Kind: UsageLimitKind.NoPlan } =>
                $"No plan. Without one nothing can be used: choose a plan to start.",
            _ => $"No plan. Usage without a plan is not limited and not billed: {Money.Count(m.Used)} {unit} used this month.",
        };
        var percent = m.Limit is { MaxUnits: > 0 } limit ? Math.Min(100, m.Used * 100.0 / limit.MaxUnits) : m.Limit is not null ? 100 : 0;
        return new(m, MeterState.NoPlan, text, percent, null, null);
    }
}
