using UsageBilling.Storage;

namespace UsageBilling.Tests;

public class BillingPeriodTests
{
    private static readonly DateTimeOffset Start = new(2026, 10, 15, 8, 0, 0, TimeSpan.Zero);
    private static readonly SubscriptionItemPeriod Item = new("si_1", "m", Start, Start.AddMonths(1));

    [Fact]
    public void For_NoItem_IsUtcCalendarMonth()
    {
        var p = BillingPeriod.For(new DateTimeOffset(2026, 2, 28, 23, 59, 59, TimeSpan.FromHours(-5)), null);
        Assert.Equal(new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero), p.Start);
        Assert.Equal(new DateTimeOffset(2026, 4, 1, 0, 0, 0, TimeSpan.Zero), p.End);
    }

    [Fact]
    public void For_InsideItemPeriod_IsItemPeriod()
    {
        Assert.Equal(new BillingPeriod(Start, Start.AddMonths(1)), BillingPeriod.For(Start, Item));
        Assert.Equal(new BillingPeriod(Start, Start.AddMonths(1)), BillingPeriod.For(Start.AddMonths(1).AddTicks(-1), Item));
    }

    [Fact]
    public void For_AtItemPeriodEnd_IsNextPeriod() =>
        Assert.Equal(new BillingPeriod(Start.AddMonths(1), Start.AddMonths(2)), BillingPeriod.For(Start.AddMonths(1), Item));

    [Fact]
    public void For_BeforeItemPeriod_IsPreviousPeriodFromAnchor() =>
        Assert.Equal(new BillingPeriod(Start.AddMonths(-1), Start), BillingPeriod.For(Start.AddTicks(-1), Item));
}
