namespace UsageBilling;

/// <summary>Limits that come from Stripe and that every recorded event must respect.</summary>
internal static class UsageRules
{
    /// <summary>The largest quantity Stripe accepts: 15 significant digits.</summary>
    public const long MaxQuantity = 999_999_999_999_999;

    /// <summary>The longest idempotency key the buffer stores.</summary>
    public const int MaxIdempotencyKeyLength = 255;

    /// <summary>The longest request fingerprint the buffer stores (a hex SHA-256 is 64).</summary>
    public const int MaxFingerprintLength = 128;

    /// <summary>How far back Stripe accepts a meter event's timestamp.</summary>
    public static readonly TimeSpan MaxAge = TimeSpan.FromDays(35);

    /// <summary>How far ahead Stripe accepts a meter event's timestamp.</summary>
    public static readonly TimeSpan MaxAhead = TimeSpan.FromMinutes(5);

    /// <summary>Truncates to whole microseconds in UTC, the precision both databases keep.</summary>
    /// <param name="value">Any instant.</param>
    /// <returns>The normalized instant.</returns>
    public static DateTimeOffset Normalize(DateTimeOffset value)
    {
        var ticks = value.UtcTicks;
        return new DateTimeOffset(ticks - (ticks % 10), TimeSpan.Zero);
    }
}
