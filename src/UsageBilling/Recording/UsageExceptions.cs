namespace UsageBilling;

/// <summary>Base of every error UsageBilling raises on purpose; the message says what to fix.</summary>
public class UsageBillingException : Exception
{
    /// <summary>Creates the exception.</summary>
    public UsageBillingException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What went wrong and what to do.</param>
    public UsageBillingException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">What went wrong and what to do.</param>
    /// <param name="innerException">The cause.</param>
    public UsageBillingException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>A usage event was refused before anything was written.</summary>
public class UsageRejectedException : UsageBillingException
{
    /// <summary>Creates the exception.</summary>
    public UsageRejectedException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">Why the event was refused.</param>
    public UsageRejectedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">Why the event was refused.</param>
    /// <param name="innerException">The cause.</param>
    public UsageRejectedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The meter is not configured under <c>UsageBilling:Meters</c>.</summary>
public sealed class UnknownMeterException : UsageRejectedException
{
    /// <summary>Creates the exception.</summary>
    public UnknownMeterException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public UnknownMeterException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public UnknownMeterException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The quantity is below 1 or has more digits than Stripe accepts.</summary>
public sealed class InvalidQuantityException : UsageRejectedException
{
    /// <summary>Creates the exception.</summary>
    public InvalidQuantityException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public InvalidQuantityException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public InvalidQuantityException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The user id does not exist in the app's user table.</summary>
public sealed class UnknownUserException : UsageRejectedException
{
    /// <summary>Creates the exception.</summary>
    public UnknownUserException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public UnknownUserException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public UnknownUserException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary><c>occurredAt</c> lies outside what Stripe accepts (35 days back, 5 minutes ahead).</summary>
public sealed class OccurredAtOutOfRangeException : UsageRejectedException
{
    /// <summary>Creates the exception.</summary>
    public OccurredAtOutOfRangeException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public OccurredAtOutOfRangeException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public OccurredAtOutOfRangeException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The idempotency key is empty or longer than 255 characters.</summary>
public sealed class InvalidIdempotencyKeyException : UsageRejectedException
{
    /// <summary>Creates the exception.</summary>
    public InvalidIdempotencyKeyException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public InvalidIdempotencyKeyException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public InvalidIdempotencyKeyException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The idempotency key was already used by this user for an event with different content.</summary>
public sealed class IdempotencyConflictException : UsageRejectedException
{
    /// <summary>Creates the exception.</summary>
    public IdempotencyConflictException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public IdempotencyConflictException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public IdempotencyConflictException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>Which limit refused an event.</summary>
public enum UsageLimitKind
{
    /// <summary>The plan's <c>HardLimit</c> (a quantity per period).</summary>
    HardLimit,

    /// <summary>The plan's <c>SpendLimit</c> (an amount per period).</summary>
    SpendLimit,

    /// <summary>The account's own quantity cap.</summary>
    CustomerQuantityCap,

    /// <summary>The account's own spend cap ("stop me at $50 this period").</summary>
    CustomerSpendCap,

    /// <summary>The account has no plan and the no-plan policy is <c>Deny</c>.</summary>
    NoPlan,

    /// <summary>The account has no plan and used the no-plan free allowance.</summary>
    NoPlanAllowance,

    /// <summary>The account's own spend cap across all its meters ("stop me at $50 this period, whatever I use").</summary>
    AccountSpendCap,
}

/// <summary>
/// The event would take the account over a limit for its billing period; nothing was written. The
/// limit and the usage are in the limit's unit: units of the meter, or currency units for spend limits.
/// </summary>
public sealed class UsageLimitExceededException : UsageRejectedException
{
    /// <summary>Creates the exception.</summary>
    public UsageLimitExceededException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public UsageLimitExceededException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public UsageLimitExceededException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception with the limit's figures.</summary>
    /// <param name="message">The message.</param>
    /// <param name="meter">The meter event name.</param>
    /// <param name="kind">Which limit refused the event.</param>
    /// <param name="limit">The limit, in units or currency units (see <see cref="IsMonetary"/>).</param>
    /// <param name="used">What the period has used so far, in the limit's unit.</param>
    /// <param name="requested">The units the event asked for.</param>
    /// <param name="periodEnd">When the period ends and the limit resets.</param>
    public UsageLimitExceededException(string message, string meter, UsageLimitKind kind, decimal limit, decimal used, long requested, DateTimeOffset periodEnd)
        : base(message)
    {
        Meter = meter;
        Kind = kind;
        Limit = limit;
        Used = used;
        Requested = requested;
        PeriodEnd = periodEnd;
    }

    /// <summary>The meter event name.</summary>
    public string Meter { get; } = "";

    /// <summary>Which limit refused the event.</summary>
    public UsageLimitKind Kind { get; }

    /// <summary>The limit, in units of the meter or in currency units (see <see cref="IsMonetary"/>).</summary>
    public decimal Limit { get; }

    /// <summary>What the period has used so far, in the limit's unit.</summary>
    public decimal Used { get; }

    /// <summary>The units the refused event asked for.</summary>
    public long Requested { get; }

    /// <summary>When the billing period ends: the limit resets then.</summary>
    public DateTimeOffset PeriodEnd { get; }

    /// <summary>Whether <see cref="Limit"/> and <see cref="Used"/> are amounts of money rather than units.</summary>
    public bool IsMonetary => Kind is UsageLimitKind.SpendLimit or UsageLimitKind.CustomerSpendCap or UsageLimitKind.AccountSpendCap;
}

/// <summary>A customer-set cap is invalid (negative, or above the plan's own limit).</summary>
public sealed class InvalidSpendCapException : UsageBillingException
{
    /// <summary>Creates the exception.</summary>
    public InvalidSpendCapException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public InvalidSpendCapException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public InvalidSpendCapException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
