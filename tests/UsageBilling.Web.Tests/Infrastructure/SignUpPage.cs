using Microsoft.Playwright;

namespace UsageBilling.Web.Tests.Infrastructure;

/// <summary>The browser tests' wait after submitting the sign-up form.</summary>
internal static class SignUpPage
{
    /// <summary>Waits until sign-up lands on /plans; on a timeout, says where the page is and what it shows.</summary>
    /// <param name="page">The page that submitted the form.</param>
    public static async Task WaitForPlansAsync(IPage page)
    {
        try
        {
            await page.WaitForURLAsync("**/plans", new() { WaitUntil = WaitUntilState.DOMContentLoaded });
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"Signing up did not land on /plans: the page is {page.Url}, saying: {await page.Locator("body").InnerTextAsync()}", ex);
        }
    }
}
