using System.Globalization;

namespace UsageBilling.Web.Components.Shared;

/// <summary>Formats amounts the same way on every page: "19.00 USD".</summary>
internal static class Money
{
    public static string Format(decimal amount, string currency, int decimals = 2) =>
        amount.ToString("N" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) + " " + currency.ToUpperInvariant();

    /// <summary>A unit price: two decimals, up to four when the price has them ("0.005 USD").</summary>
    public static string UnitPrice(decimal amount, string currency) =>
        amount.ToString("#,0.00##", CultureInfo.InvariantCulture) + " " + currency.ToUpperInvariant();

    public static string Date(DateTimeOffset value) => value.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    public static string Time(DateTimeOffset value) => value.UtcDateTime.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture);

    public static string Count(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}
