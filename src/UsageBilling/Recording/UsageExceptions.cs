namespace UsageBilling.Recording;

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
