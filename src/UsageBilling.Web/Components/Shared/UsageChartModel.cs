using System.Globalization;

namespace UsageBilling.Web.Components.Shared;

/// <summary>One day of the chart: what was used (past days and today) and the cumulative or forecast total at its end.</summary>
/// <param name="Day">The UTC day.</param>
/// <param name="Used">Used that day; <see langword="null"/> for days still ahead.</param>
/// <param name="Cumulative">The period's total at the end of the day (now, for today); <see langword="null"/> ahead.</param>
/// <param name="Forecast">The forecast total at the end of a day ahead (and today); <see langword="null"/> for past days.</param>
public sealed record ChartDay(DateOnly Day, long? Used, long? Cumulative, long? Forecast);

/// <summary>A tick on an axis: its value and position.</summary>
/// <param name="Value">The value.</param>
/// <param name="Y">The y coordinate.</param>
public sealed record ChartTick(long Value, double Y);

/// <summary>
/// The usage chart of one meter over the whole billing period, computed from the local rollups (no Stripe call):
/// daily bars (right axis), the cumulative total against the allowance and the limit (left axis), and a forecast
/// to the period end at the period's average rate so far, priced by the plan's <see cref="PriceSchedule"/> (the
/// same tiers as the projected cost). Coordinates are SVG user units; the razor component only draws them.
/// </summary>
public sealed class UsageChartModel
{
    /// <summary>The SVG width in user units.</summary>
    public const double Width = 760;
    /// <summary>The SVG height in user units.</summary>
    public const double Height = 280;
    /// <summary>Room left of the plot (left axis).</summary>
    public const double Left = 64;
    /// <summary>Room right of the plot (daily axis).</summary>
    public const double Right = 56;
    /// <summary>Room above the plot.</summary>
    public const double Top = 18;
    /// <summary>Room below the plot (day labels, axis title).</summary>
    public const double Bottom = 46;
    /// <summary>The plot's width.</summary>
    public const double PlotWidth = Width - Left - Right;
    /// <summary>The plot's height.</summary>
    public const double PlotHeight = Height - Top - Bottom;

    /// <summary>A limit further above the data than this factor is named above the chart instead of squashing the data.</summary>
    private const double OffScaleFactor = 3;

    private readonly DateTimeOffset _origin;
    private readonly double _cumulativeTop;
    private readonly double _dailyTop;

    private UsageChartModel(MeterView view, DateTimeOffset now, bool countEvents, string currency)
    {
        var m = view.Usage;
        Unit = m.Unit ?? "units";
        Currency = currency;
        var firstDay = DateOnly.FromDateTime(m.PeriodStart.UtcDateTime);
        var lastDay = DateOnly.FromDateTime(m.PeriodEnd.UtcDateTime.AddTicks(-1));
        _origin = new DateTimeOffset(firstDay.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        DayCount = lastDay.DayNumber - firstDay.DayNumber + 1;
        PeriodStart = m.PeriodStart;
        PeriodEnd = m.PeriodEnd;
        Now = now < m.PeriodStart ? m.PeriodStart : now > m.PeriodEnd ? m.PeriodEnd : now;
        Used = m.Used;
        Included = m.Included;
        Limit = m.Limit?.MaxUnits ?? m.HardLimit;

        // The rate so far, over at least one day, so an hour-old period does not forecast 24 times its first hour.
        var elapsedDays = Math.Max(1.0, (Now - PeriodStart).TotalDays);
        RatePerDay = Used / elapsedDays;
        var raw = Used + (RatePerDay * (PeriodEnd - Now).TotalDays);
        ForecastTotal = (long)Math.Round(raw, MidpointRounding.AwayFromZero);
        if (Limit is { } cap && ForecastTotal > cap)
        {
            ForecastTotal = Math.Max(cap, Used);
            ForecastCapped = true;
        }

        ForecastCost = view.Schedule?.CostOf(ForecastTotal);

        var byDay = m.Daily.ToDictionary(d => d.Day, d => countEvents ? d.Count : d.Total);
        var today = DateOnly.FromDateTime(Now.UtcDateTime);
        var days = new List<ChartDay>(DayCount);
        long running = 0;
        for (var d = firstDay; d <= lastDay; d = d.AddDays(1))
        {
            if (d < today)
            {
                var used = byDay.GetValueOrDefault(d);
                running += used;
                days.Add(new ChartDay(d, used, running, null));
            }
            else if (d == today)
            {
                var used = byDay.GetValueOrDefault(d);
                running += used;
                days.Add(new ChartDay(d, used, Used, Used));
            }
            else
            {
                days.Add(new ChartDay(d, null, null, ForecastAt(new DateTimeOffset(d.AddDays(1).ToDateTime(TimeOnly.MinValue), TimeSpan.Zero))));
            }
        }

        Days = days;
        MaxDaily = days.Max(d => d.Used ?? 0);
        var dataMax = Math.Max(Math.Max(Used, ForecastTotal), Included);
        LimitOffScale = Limit is { } l && dataMax > 0 && l > dataMax * OffScaleFactor;
        if (Limit is { } shown && !LimitOffScale)
        {
            dataMax = Math.Max(dataMax, shown);
        }

        (_cumulativeTop, CumulativeTicks) = Ticks(dataMax);
        (_dailyTop, DailyTicks) = Ticks(Math.Max(MaxDaily, (long)Math.Ceiling(RatePerDay)));
    }

    /// <summary>The unit label.</summary>
    public string Unit { get; }

    /// <summary>The plan's currency.</summary>
    public string Currency { get; }

    /// <summary>Days in the period (UTC days it touches).</summary>
    public int DayCount { get; }

    /// <summary>Inclusive period start.</summary>
    public DateTimeOffset PeriodStart { get; }

    /// <summary>Exclusive period end.</summary>
    public DateTimeOffset PeriodEnd { get; }

    /// <summary>Now, clamped into the period.</summary>
    public DateTimeOffset Now { get; }

    /// <summary>The period's usage so far.</summary>
    public long Used { get; }

    /// <summary>The plan's allowance (0 without).</summary>
    public long Included { get; }

    /// <summary>The most units the period may reach (the limit in force), if any.</summary>
    public long? Limit { get; }

    /// <summary>Whether the limit is so far above the data that it is named, not drawn.</summary>
    public bool LimitOffScale { get; }

    /// <summary>The average use per day so far.</summary>
    public double RatePerDay { get; }

    /// <summary>The period's total at its end if use goes on at <see cref="RatePerDay"/> (never past the limit).</summary>
    public long ForecastTotal { get; }

    /// <summary>Whether the forecast stops at the limit.</summary>
    public bool ForecastCapped { get; }

    /// <summary>What <see cref="ForecastTotal"/> would cost under the plan's tiers; <see langword="null"/> without a plan.</summary>
    public decimal? ForecastCost { get; }

    /// <summary>Every day of the period, past, today and ahead.</summary>
    public IReadOnlyList<ChartDay> Days { get; }

    /// <summary>The largest daily use so far.</summary>
    public long MaxDaily { get; }

    /// <summary>Ticks of the left axis (period total).</summary>
    public IReadOnlyList<ChartTick> CumulativeTicks { get; }

    /// <summary>Ticks of the right axis (per day).</summary>
    public IReadOnlyList<ChartTick> DailyTicks { get; }

    /// <summary>The width of one day.</summary>
    public double Slot => PlotWidth / DayCount;

    /// <summary>The y of zero.</summary>
    public double Baseline => Top + PlotHeight;

    /// <summary>Which days get a label on the x-axis: about eight, evenly spaced back from the last day (always labelled).</summary>
    public bool Labelled(int index)
    {
        var every = Math.Max(1, (int)Math.Ceiling(DayCount / 8.0));
        return (DayCount - 1 - index) % every == 0;
    }

    /// <summary>Computes the chart of <paramref name="view"/> at <paramref name="now"/>.</summary>
    public static UsageChartModel For(MeterView view, DateTimeOffset now, bool countEvents, string currency) => new(view, now, countEvents, currency);

    /// <summary>The x of an instant.</summary>
    public double X(DateTimeOffset instant) => Left + ((instant - _origin).TotalDays * Slot);

    /// <summary>The x where day <paramref name="index"/> begins.</summary>
    public double XOfDay(int index) => Left + (index * Slot);

    /// <summary>The y of a period total (left axis).</summary>
    public double YCumulative(double value) => Baseline - (value / _cumulativeTop * PlotHeight);

    /// <summary>The y of a daily value (right axis).</summary>
    public double YDaily(double value) => Baseline - (value / _dailyTop * PlotHeight);

    /// <summary>The cumulative line: from the period start, the end of each past day, then now.</summary>
    public string CumulativePoints()
    {
        var points = new List<string> { P(X(PeriodStart), YCumulative(0)) };
        for (var i = 0; i < Days.Count; i++)
        {
            var d = Days[i];
            if (d.Forecast is null && d.Cumulative is { } c)
            {
                points.Add(P(XOfDay(i + 1), YCumulative(c)));
            }
        }

        points.Add(P(X(Now), YCumulative(Used)));
        return string.Join(' ', points);
    }

    /// <summary>The forecast line from now to the period end, flat from where it meets the limit.</summary>
    public string ForecastPoints()
    {
        var points = new List<string> { P(X(Now), YCumulative(Used)) };
        if (ForecastCapped && RatePerDay > 0 && Limit is { } cap)
        {
            var reach = Now + TimeSpan.FromDays(Math.Max(0, cap - Used) / RatePerDay);
            points.Add(P(X(reach), YCumulative(cap)));
        }

        points.Add(P(X(PeriodEnd), YCumulative(ForecastTotal)));
        return string.Join(' ', points);
    }

    /// <summary>An SVG coordinate.</summary>
    public static string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);

    /// <summary>A day as the x-axis names it ("Dec 3").</summary>
    public static string DayLabel(DateOnly day) => day.ToString("MMM d", CultureInfo.InvariantCulture);

    private long ForecastAt(DateTimeOffset instant)
    {
        var at = instant > PeriodEnd ? PeriodEnd : instant;
        var value = (long)Math.Round(Used + (RatePerDay * Math.Max(0, (at - Now).TotalDays)), MidpointRounding.AwayFromZero);
        return Limit is { } cap ? Math.Min(value, Math.Max(cap, Used)) : value;
    }

    private (double Top, IReadOnlyList<ChartTick> Ticks) Ticks(long max)
    {
        // 1-2-5 steps giving four to six intervals; whole units only.
        var target = Math.Max(1, max) / 5.0;
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(target)));
        var step = new[] { 1, 2, 5, 10 }.Select(f => f * magnitude).First(s => s >= target);
        step = Math.Max(1, Math.Ceiling(step));
        var top = Math.Max(step, Math.Ceiling(Math.Max(1, max) / step) * step);
        var ticks = new List<ChartTick>();
        for (var v = 0.0; v <= top + (step / 2); v += step)
        {
            ticks.Add(new ChartTick((long)v, Baseline - (v / top * PlotHeight)));
        }

        return (top, ticks);
    }

    private static string P(double x, double y) => F(x) + "," + F(y);
}
