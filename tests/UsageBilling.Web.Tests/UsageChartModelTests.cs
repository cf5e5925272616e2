using UsageBilling.Storage;
using UsageBilling.Web.Components.Shared;

namespace UsageBilling.Web.Tests;

/// <summary>The chart's and the states' arithmetic, without a browser: what the SVG draws and what the page says.</summary>
public sealed class UsageChartModelTests
{
    private static readonly DateTimeOffset Start = new(2026, 3, 10, 15, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset End = Start.AddMonths(1);

    private static PlanDefinition Plan(long included = 100, decimal unitPrice = 0.02m, long? hardLimit = 1000)
    {
        var plan = new PlanDefinition { DisplayName = "Starter", MonthlyPrice = 19 };
        plan.Meters["ai_messages"] = new PlanMeterPrice { Included = included, UnitPrice = unitPrice, HardLimit = hardLimit };
        return plan;
    }

    private static MeterUsageSummary Usage(long used, IReadOnlyList<DailyUsage> daily, long included = 100, UsageLimitState? limit = null) =>
        new("ai_messages", "AI messages", "messages", used, included, Math.Max(0, included - used), included > 0 ? used * 100.0 / included : 0, 1000,
            Start, End, 0m, 0, null, daily)
        { Limit = limit };

    [Fact]
    public void Forecast_ExtendsTheRateSoFarToThePeriodEnd_PricedByThePlansTiers()
    {
        // 10 days in, 60 used: 6 a day; 31 days in the period (Mar 10 15:00 – Apr 10 15:00) → 60 + 6 × 21 = 186.
        var now = Start.AddDays(10);
        var daily = Enumerable.Range(0, 11).Select(d => new DailyUsage(DateOnly.FromDateTime(Start.UtcDateTime).AddDays(d), d < 10 ? 6 : 0, d < 10 ? 6 : 0)).ToList();
        var view = MeterView.For(Usage(60, daily), Plan(), "usd");

        var chart = UsageChartModel.For(view, now, countEvents: false, "usd");

        Assert.Equal(6.0, chart.RatePerDay, 6);
        Assert.Equal(186, chart.ForecastTotal);
        Assert.False(chart.ForecastCapped);
        Assert.Equal(1.72m, chart.ForecastCost); // 86 over the 100 included at 0.02
        Assert.Equal(32, chart.DayCount); // Mar 10 … Apr 10 (UTC days the period touches)
        Assert.Equal(32, chart.Days.Count);
        Assert.Equal(11, chart.Days.Count(d => d.Used is not null));
        Assert.All(chart.Days.Skip(11), d => Assert.Null(d.Used));
        Assert.Equal(186, chart.Days[^1].Forecast);
        Assert.Equal(60, chart.Days[9].Cumulative);
    }

    [Fact]
    public void Axes_HaveRoundTicksBetweenZeroAndTheTop_AndTheFarLimitIsNamedNotDrawn()
    {
        var now = Start.AddDays(10);
        var daily = new[] { new DailyUsage(DateOnly.FromDateTime(Start.UtcDateTime), 60, 60) };
        var chart = UsageChartModel.For(MeterView.For(Usage(60, daily), Plan(), "usd"), now, countEvents: false, "usd");

        var ticks = chart.CumulativeTicks.Select(t => t.Value).ToList();
        Assert.True(ticks.Count >= 4, string.Join(", ", ticks));
        Assert.Equal(0, ticks[0]);
        Assert.True(ticks[^1] >= chart.ForecastTotal);
        Assert.Single(ticks.Zip(ticks.Skip(1), (a, b) => b - a).Distinct());
        Assert.Contains(ticks.Zip(ticks.Skip(1), (a, b) => b - a).First(), new long[] { 1, 2, 5, 10, 20, 50, 100 });
        Assert.True(chart.LimitOffScale); // 1,000 against a forecast of 186
        Assert.Equal(chart.Baseline, chart.YCumulative(0));
        Assert.Equal(UsageChartModel.Top, chart.YCumulative(ticks[^1]), 6);
    }

    [Fact]
    public void AtTheLimit_TheForecastStopsThere_AndNothingIsSaidToBeBilled()
    {
        var now = Start.AddDays(2);
        var limit = new UsageLimitState(UsageLimitKind.HardLimit, 8, null, Reached: true, End);
        var view = MeterView.For(Usage(8, [new DailyUsage(DateOnly.FromDateTime(Start.UtcDateTime), 8, 8)], included: 5, limit), Plan(5, 0.5m, 8), "usd");

        var chart = UsageChartModel.For(view, now, countEvents: false, "usd");

        Assert.Equal(MeterState.LimitReached, view.State);
        Assert.DoesNotContain("billed", view.Headline, StringComparison.Ordinal);
        Assert.Contains("until 2026-04-10 15:00 UTC", view.Headline, StringComparison.Ordinal);
        Assert.Null(view.NextUnitPrice);
        Assert.Equal((8L, true), (chart.ForecastTotal, chart.ForecastCapped));
        Assert.False(chart.LimitOffScale);
    }

    [Theory]
    [InlineData(UsageLimitKind.NoPlanAllowance, 20L, false, "No plan. Without one you may use 20 messages free per month: 3 used, 17 left until 2026-04-10 15:00 UTC. Nothing is billed.")]
    [InlineData(UsageLimitKind.NoPlanAllowance, 3L, true, "No plan. Without one you may use 3 messages free per month, and you have used them all: nothing more until 2026-04-10 15:00 UTC, or choose a plan.")]
    [InlineData(UsageLimitKind.NoPlan, 0L, true, "No plan. Without one nothing can be used: choose a plan to start.")]
    public void NoPlan_SaysWhatThePolicyAllows(UsageLimitKind kind, long max, bool reached, string expected)
    {
        var view = MeterView.For(Usage(3, [], included: 0, new UsageLimitState(kind, max, null, reached, End)), plan: null, "usd");

        Assert.Equal(MeterState.NoPlan, view.State);
        Assert.Equal(expected, view.Headline);
        Assert.DoesNotContain("0 of 0", view.Headline, StringComparison.Ordinal);
    }

    [Fact]
    public void Threshold_FromEightyPercent_OrWhenTheAccountsOwnLowerAlertFired()
    {
        var half = Usage(50, [], included: 100);

        Assert.Equal(MeterState.Within, MeterView.For(half, Plan(), "usd").State);
        Assert.Equal(MeterState.Threshold, MeterView.For(half, Plan(), "usd", alerted: true).State);
        Assert.Equal(MeterState.Threshold, MeterView.For(Usage(80, [], included: 100), Plan(), "usd").State);
        Assert.Equal(MeterState.Overage, MeterView.For(Usage(101, [], included: 100), Plan(), "usd", alerted: true).State);
        Assert.Equal("Within your allowance: 50 more messages before each costs 0.02 USD.", MeterView.For(half, Plan(), "usd").Headline);
    }

    [Fact]
    public void NoPlan_AllowPolicy_SaysUsageIsNeitherLimitedNorBilled()
    {
        var view = MeterView.For(Usage(3, [], included: 0), plan: null, "usd");

        Assert.Equal("No plan. Usage without a plan is not limited and not billed: 3 messages used this month.", view.Headline);
    }
}
