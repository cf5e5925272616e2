using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>A billing period: [<see cref="Start"/>, <see cref="End"/>).</summary>
/// <param name="Start">Inclusive start.</param>
/// <param name="End">Exclusive end.</param>
public readonly record struct BillingPeriod(DateTimeOffset Start, DateTimeOffset End)
{
    /// <summary>Whether <paramref name="instant"/> lies in the period (start inclusive, end exclusive).</summary>
    /// <param name="instant">The instant.</param>
    /// <returns><see langword="true"/> when inside.</returns>
    public bool Contains(DateTimeOffset instant) => instant >= Start && instant < End;

    /// <summary>The UTC calendar month containing <paramref name="instant"/>: the period of users without a subscription.</summary>
    /// <param name="instant">Any instant.</param>
    /// <returns>The month.</returns>
    public static BillingPeriod CalendarMonth(DateTimeOffset instant)
    {
        var utc = instant.ToUniversalTime();
        var start = new DateTimeOffset(utc.Year, utc.Month, 1, 0, 0, 0, TimeSpan.Zero);
        return new BillingPeriod(start, start.AddMonths(1));
    }

    /// <summary>
    /// The billing period containing <paramref name="instant"/> for a meter: the subscription item's
    /// period when the item is known (earlier or later monthly periods are derived from its anchor),
    /// else the UTC calendar month.
    /// </summary>
    /// <param name="instant">The instant, for example an event's <c>occurred_at</c>.</param>
    /// <param name="item">The meter's subscription item, if any.</param>
    /// <returns>The period.</returns>
    public static BillingPeriod For(DateTimeOffset instant, SubscriptionItemPeriod? item)
    {
        if (item is null || item.PeriodEnd <= item.PeriodStart)
        {
            return CalendarMonth(instant);
        }

        var current = new BillingPeriod(item.PeriodStart, item.PeriodEnd);
        if (current.Contains(instant))
        {
            return current;
        }

        // Outside the known period (a late webhook, or an event from an earlier period): step by
        // whole months from the item's anchor, as Stripe does for monthly prices.
        var anchor = item.PeriodStart;
        var months = ((instant.Year - anchor.Year) * 12) + instant.Month - anchor.Month;
        for (var k = months - 1; k <= months + 1; k++)
        {
            var candidate = new BillingPeriod(anchor.AddMonths(k), anchor.AddMonths(k + 1));
            if (candidate.Contains(instant))
            {
                return candidate;
            }
        }

        return CalendarMonth(instant);
    }

    /// <summary>Finds the item that bills <paramref name="meter"/> in <paramref name="state"/>.</summary>
    /// <param name="state">The user's billing state, if known.</param>
    /// <param name="meter">The meter event name.</param>
    /// <returns>The item, or <see langword="null"/>.</returns>
    public static SubscriptionItemPeriod? ItemFor(BillingState? state, string meter) =>
        state?.Items.Where(i => i.Meter == meter).OrderByDescending(i => i.PeriodEnd).FirstOrDefault();
}
